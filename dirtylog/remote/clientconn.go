package remote

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// errConnLost: the connection failed under a request; the client redials
// and retries.
var errConnLost = errors.New("remote: connection lost")

type reply struct {
	h   Header
	p   []byte
	err error
}

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

	mu      sync.Mutex
	pending map[uint32]chan reply
	err     error
	done    chan struct{}
}

func newClientConn(c *Client, nc net.Conn) *clientConn {
	cc := &clientConn{
		c: c, nc: nc,
		bw:      bufio.NewWriterSize(nc, 64<<10),
		pending: map[uint32]chan reply{},
		done:    make(chan struct{}),
	}
	c.wg.Add(1)
	go cc.readLoop()
	return cc
}

func (cc *clientConn) readLoop() {
	defer cc.c.wg.Done()
	fr := NewFrameReader(bufio.NewReaderSize(cc.nc, 64<<10))
	for {
		h, p, err := fr.ReadFrame()
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
	ch := cc.pending[seq]
	delete(cc.pending, seq)
	cc.mu.Unlock()
	if ch != nil {
		ch <- r // buffered; a late reply to an abandoned seq is dropped
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
	for _, ch := range pending {
		ch <- reply{err: err}
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
// every reply. A reply carrying an error is returned as a *RemoteError.
func (cc *clientConn) roundTrips(ctx context.Context, uuid string, node NodeID, reqs []request) ([]reply, error) {
	chans := make([]chan reply, len(reqs))
	seqs := make([]uint32, len(reqs))
	cc.mu.Lock()
	if cc.err != nil {
		err := cc.err
		cc.mu.Unlock()
		return nil, err
	}
	for i := range reqs {
		seqs[i] = cc.c.seq.Add(1)
		chans[i] = make(chan reply, 1)
		cc.pending[seqs[i]] = chans[i]
	}
	cc.mu.Unlock()

	cc.wmu.Lock()
	var hb [HeaderSize]byte
	var werr error
	if d, ok := ctx.Deadline(); ok {
		cc.nc.SetWriteDeadline(d)
	} else {
		cc.nc.SetWriteDeadline(time.Now().Add(cc.c.opts.Timeout))
	}
	for i, rq := range reqs {
		h := Header{Version: Version, Seq: seqs[i], Type: rq.t, DataSize: uint32(len(rq.p)), LUID: node, UUID: uuid}
		if _, werr = cc.bw.Write(appendHeader(hb[:0], &h)); werr != nil {
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

	out := make([]reply, len(reqs))
	for i, ch := range chans {
		select {
		case r := <-ch:
			if r.err != nil {
				cc.forget(seqs[i+1:])
				return nil, r.err
			}
			if r.h.Error != 0 {
				r.err = &RemoteError{Type: reqs[i].t, Errno: -r.h.Error, Message: string(r.p)}
			}
			out[i] = r
		case <-ctx.Done():
			cc.forget(seqs[i:])
			return nil, fmt.Errorf("remote: %v: %w", reqs[i].t, ctx.Err())
		}
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
