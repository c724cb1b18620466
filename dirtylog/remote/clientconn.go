package remote

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// errConnLost: the connection failed under a request; the client redials
// and retries.
var errConnLost = errors.New("remote: connection lost")

type reply struct {
	h   Header
	p   []byte
	err error
	i   int // index of the request in its batch
}

// waiter is where a request's reply goes: the batch's channel (one per
// roundTrips call, buffered for the whole batch) and the request's index.
type waiter struct {
	ch chan reply
	i  int
}

// batchPool holds reply channels of finished roundTrips calls. A channel
// goes back only once every reply of its batch was received, so no late
// reply can land in it.
var batchPool = sync.Pool{New: func() any { return make(chan reply, minBatchChan) }}

const minBatchChan = 8

type request struct {
	t RequestType
	p []byte
}

// clientConn is one connection to the server, with many requests in
// flight matched to their replies by seq.
type clientConn struct {
	c  *Client
	nc net.Conn

	wmu sync.Mutex
	bw  *bufio.Writer
	hb  [HeaderSize]byte // header scratch, under wmu
	wdl time.Time        // the write deadline last set, under wmu

	mu      sync.Mutex
	pending map[uint32]waiter
	err     error
	done    chan struct{}

	frames atomic.Uint64 // frames read, for the watchdog
}

func newClientConn(c *Client, nc net.Conn) *clientConn {
	cc := &clientConn{
		c: c, nc: nc,
		bw:      bufio.NewWriterSize(nc, 64<<10),
		pending: map[uint32]waiter{},
		done:    make(chan struct{}),
	}
	c.wg.Add(2)
	go cc.readLoop()
	go cc.watchdog()
	return cc
}

// watchdog fails the connection when requests wait and no frame at all
// has come from the server for about ClientOptions.Timeout: a server
// that hangs, or a peer cut off without a reset, would otherwise keep a
// call without a context deadline (a Flush) waiting forever. The failure
// makes the client redial and retry, then report ErrUnreachable.
func (cc *clientConn) watchdog() {
	defer cc.c.wg.Done()
	const checks = 4
	t := time.NewTicker(cc.c.opts.Timeout / checks)
	defer t.Stop()
	var last uint64
	stuck := 0
	for {
		select {
		case <-cc.done:
			return
		case <-t.C:
		}
		n := cc.frames.Load()
		cc.mu.Lock()
		waiting := len(cc.pending) > 0
		cc.mu.Unlock()
		if waiting && n == last {
			stuck++
		} else {
			stuck = 0
		}
		last = n
		if stuck >= checks {
			cc.fail(fmt.Errorf("%w: no reply from the server for %v", errConnLost, cc.c.opts.Timeout))
			return
		}
	}
}

func (cc *clientConn) readLoop() {
	defer cc.c.wg.Done()
	fr := NewFrameReader(bufio.NewReaderSize(cc.nc, connBufSize))
	for {
		h, p, err := fr.ReadFrame()
		cc.frames.Add(1)
		if err != nil {
			var he *HeaderError
			if errors.As(err, &he) && !errors.Is(err, ErrVersion) {
				// In step: fail that request only.
				cc.deliver(h.Seq, reply{h: h, err: fmt.Errorf("remote: server reply: %w", err)})
				continue
			}
			if errors.As(err, &he) {
				cc.deliver(h.Seq, reply{h: h, err: fmt.Errorf("remote: server reply: %w", err)})
				err = fmt.Errorf("%w: %w", errConnLost, err)
			} else {
				err = fmt.Errorf("%w: %w", errConnLost, err)
			}
			cc.fail(err)
			return
		}
		var cp []byte
		if len(p) > 0 {
			cp = append([]byte(nil), p...)
		}
		cc.deliver(h.Seq, reply{h: h, p: cp})
	}
}

func (cc *clientConn) deliver(seq uint32, r reply) {
	cc.mu.Lock()
	w, ok := cc.pending[seq]
	delete(cc.pending, seq)
	cc.mu.Unlock()
	if ok {
		r.i = w.i
		w.ch <- r // buffered for the batch; a reply to an abandoned seq is dropped
	}
}

// fail closes the connection and fails every request in flight.
func (cc *clientConn) fail(err error) {
	cc.mu.Lock()
	if cc.err != nil {
		cc.mu.Unlock()
		return
	}
	cc.err = err
	pending := cc.pending
	cc.pending = nil
	close(cc.done)
	cc.mu.Unlock()
	cc.nc.Close()
	for _, w := range pending {
		w.ch <- reply{err: err, i: w.i}
	}
	cc.c.connLost(cc, err)
}

func (cc *clientConn) failed() bool {
	select {
	case <-cc.done:
		return true
	default:
		return false
	}
}

// roundTrips sends reqs in order (pipelined, one write) and waits for
// every reply, which it stores in out (grown if it is too short; nil is
// fine). A reply carrying an error is returned as a *RemoteError.
func (cc *clientConn) roundTrips(ctx context.Context, uuid string, node NodeID, reqs []request, out []reply) ([]reply, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("remote: %v: %w", reqs[0].t, err)
	}
	var ch chan reply
	if len(reqs) <= minBatchChan {
		ch = batchPool.Get().(chan reply)
	} else {
		ch = make(chan reply, len(reqs))
	}
	var seq0 [8]uint32
	seqs := seq0[:0]
	cc.mu.Lock()
	if cc.err != nil {
		err := cc.err
		cc.mu.Unlock()
		return nil, err
	}
	for i := range reqs {
		s := cc.c.seq.Add(1)
		seqs = append(seqs, s)
		cc.pending[s] = waiter{ch, i}
	}
	cc.mu.Unlock()

	cc.wmu.Lock()
	var werr error
	// The context bounds the wait for the replies, not the write: a
	// deadline hit mid-write would leave half a frame on the stream and
	// cost every caller sharing the connection a redial. A write that
	// blocks (a server not reading) is bounded by Timeout; the deadline
	// is renewed only when half used, without a timer update per request.
	if now := time.Now(); cc.wdl.Sub(now) < cc.c.opts.Timeout/2 {
		cc.wdl = now.Add(cc.c.opts.Timeout)
		cc.nc.SetWriteDeadline(cc.wdl)
	}
	for i, rq := range reqs {
		h := Header{Version: Version, Seq: seqs[i], Type: rq.t, DataSize: uint32(len(rq.p)), LUID: node, UUID: uuid}
		if _, werr = cc.bw.Write(appendHeader(cc.hb[:0], &h)); werr != nil {
			break
		}
		if _, werr = cc.bw.Write(rq.p); werr != nil {
			break
		}
	}
	if werr == nil {
		werr = cc.bw.Flush()
	}
	cc.wmu.Unlock()
	if werr != nil {
		cc.fail(fmt.Errorf("%w: %w", errConnLost, werr))
		return nil, fmt.Errorf("%w: %w", errConnLost, werr)
	}

	if cap(out) < len(reqs) {
		out = make([]reply, len(reqs))
	}
	out = out[:len(reqs)]
	for range reqs {
		select {
		case r := <-ch:
			if r.err != nil {
				cc.forget(seqs)
				return nil, r.err
			}
			if r.h.Error != 0 {
				r.err = &RemoteError{Type: reqs[r.i].t, Errno: -r.h.Error, Message: string(r.p)}
			}
			out[r.i] = r
		case <-ctx.Done():
			cc.forget(seqs)
			return nil, fmt.Errorf("remote: %v: %w", reqs[0].t, ctx.Err())
		}
	}
	if cap(ch) == minBatchChan {
		batchPool.Put(ch)
	}
	return out, nil
}

func (cc *clientConn) forget(seqs []uint32) {
	cc.mu.Lock()
	for _, s := range seqs {
		delete(cc.pending, s)
	}
	cc.mu.Unlock()
}
