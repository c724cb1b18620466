package nbd

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sync/semaphore"
)

// conn is one client connection.
type conn struct {
	s  *Server
	nc net.Conn

	admitted bool // in the transmission phase: counted in Server.serving (guarded by s.mu)

	mu      sync.Mutex
	closing bool // Close was called: stop reading requests

	// stop is cancelled by shutdown: it ends a reader waiting for
	// buffer space, which a read deadline cannot reach.
	stop   context.Context
	cancel context.CancelFunc
}

func newConn(s *Server, nc net.Conn) *conn {
	c := &conn{s: s, nc: nc}
	c.stop, c.cancel = context.WithCancel(context.Background())
	return c
}

// shutdown makes the connection stop reading: its reader's next (or
// current) read fails at once, and replies must go out within the drain
// timeout.
func (c *conn) shutdown() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closing = true
	c.cancel()
	c.nc.SetReadDeadline(time.Now())
	c.nc.SetWriteDeadline(time.Now().Add(c.s.o.DrainTimeout))
}

func (c *conn) logf(format string, args ...any) {
	c.s.o.Logf("nbd: %s: "+format, append([]any{c.nc.RemoteAddr()}, args...)...)
}

func (c *conn) serve() {
	defer c.nc.Close()
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	c.nc.SetDeadline(time.Now().Add(c.s.o.HandshakeTimeout))
	c.mu.Unlock()
	ss := newSession(c.nc)
	defer func() {
		// After STARTTLS the TLS session is shut down (close_notify)
		// before the connection closes, as the protocol asks at a
		// disconnect; tls.Conn bounds that write itself.
		if tc, ok := ss.rw.(*tls.Conn); ok {
			tc.Close()
		}
	}()
	e, err := c.negotiate(ss)
	if err != nil {
		if !errors.Is(err, ErrAborted) {
			c.logf("negotiation ended: %v", err)
		}
		return
	}
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	c.nc.SetDeadline(time.Time{})
	c.mu.Unlock()
	if err := c.transmit(ss, e); err != nil {
		c.logf("connection ended: %v", err)
	}
}

// reply is a simple reply waiting for the writer.
type reply struct {
	handle uint64
	errno  uint32
	data   []byte
	buf    *[]byte // returned to the pool once written
	weight int64   // buffer budget released once written
}

// transmit serves requests until the client disconnects, sends a bad
// request header, or the server closes. Requests run concurrently (at most
// MaxInFlight); one writer sends their replies in completion order.
func (c *conn) transmit(ss *session, e *Export) error {
	o := &c.s.o
	replies := make(chan reply, o.MaxInFlight)
	budget := semaphore.NewWeighted(o.MaxBufferBytes)
	writerDone := make(chan error, 1)
	go func() { writerDone <- c.writeReplies(ss, replies, budget) }()

	t := &transmission{c: c, e: e, replies: replies, budget: budget, slots: make(chan struct{}, o.MaxInFlight)}
	err := t.readRequests(ss)
	t.running.Wait()
	close(replies)
	werr := <-writerDone
	if err == nil {
		err = werr
	}
	return err
}

type transmission struct {
	c       *conn
	e       *Export
	replies chan<- reply
	budget  *semaphore.Weighted
	slots   chan struct{}
	running sync.WaitGroup
}

// readRequests reads and dispatches requests; it returns nil at a clean end
// (NBD_CMD_DISC, server shutdown, the client closing between requests).
func (t *transmission) readRequests(ss *session) error {
	c := t.c
	o := &c.s.o
	var hdr [requestSize]byte
	for {
		if _, err := io.ReadFull(ss.r, hdr[:]); err != nil {
			if t.stopping() || errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("nbd: reading a request: %w", err)
		}
		req, err := parseRequest(hdr[:])
		if err != nil {
			return err
		}
		if req.typ == cmdDisc {
			return nil
		}
		errno := t.check(req)
		closing := t.stopping()
		if closing && errno == 0 {
			// Read after Close (from the read buffer): answered, not run,
			// so a client's pipelined backlog cannot keep Close waiting.
			errno = errShutdown
		}
		if req.hasPayload() && (errno != 0 || req.length > o.MaxPayload) {
			if _, err := io.CopyN(io.Discard, ss.r, int64(req.length)); err != nil {
				if closing {
					return nil
				}
				return fmt.Errorf("nbd: draining a refused write of %d bytes: %w", req.length, err)
			}
		}
		if errno != 0 {
			c.s.c.errs.Add(1)
			t.replies <- reply{handle: req.handle, errno: errno}
			continue
		}
		var buf *[]byte
		var weight int64
		if req.typ == cmdRead || req.typ == cmdWrite {
			weight = int64(max(req.length, 1))
			if err := t.budget.Acquire(c.stop, weight); err != nil {
				return nil // the server is closing
			}
			buf = getBuf(int(req.length))
			if req.typ == cmdWrite {
				if _, err := io.ReadFull(ss.r, *buf); err != nil {
					putBuf(buf)
					t.budget.Release(weight)
					if t.stopping() {
						return nil
					}
					return fmt.Errorf("nbd: reading a write's %d bytes: %w", req.length, err)
				}
			}
		}
		t.slots <- struct{}{}
		if n := int64(len(t.slots)); n > c.s.c.maxInFlight.Load() {
			c.s.c.maxInFlight.Store(n) // a statistic: an occasional lost race is fine
		}
		t.running.Add(1)
		go t.run(req, buf, weight)
	}
}

func (t *transmission) stopping() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	return t.c.closing
}

// check validates a request before it runs; it returns an errno or 0.
func (t *transmission) check(r request) uint32 {
	e := t.e
	o := &t.c.s.o
	allowed := uint16(0)
	write := false
	switch r.typ {
	case cmdRead:
	case cmdWrite:
		allowed, write = cmdFlagFUA, true
	case cmdFlush:
		if _, ok := e.Dev.(syncer); !ok {
			return errInval
		}
	case cmdTrim:
		if _, ok := e.Dev.(discarder); !ok {
			return errInval
		}
		allowed, write = cmdFlagFUA, true
	case cmdWriteZeroes:
		allowed, write = cmdFlagFUA|cmdFlagNoHole, true
	default:
		return errInval // unknown command
	}
	if t.e.transmissionFlags()&tflagSendFUA != 0 {
		// With NBD_FLAG_SEND_FUA the protocol requires FUA to be accepted
		// on every command (clients set it on reads and flushes too); it
		// changes nothing where the command writes no data.
		allowed |= cmdFlagFUA
	}
	if r.flags&^allowed != 0 {
		return errInval
	}
	if write && e.ReadOnly {
		return errPerm
	}
	if r.typ == cmdFlush {
		return 0
	}
	if (r.typ == cmdRead || r.typ == cmdWrite) && r.length > o.MaxPayload {
		return errInval
	}
	if m := uint64(e.MinBlock); r.off%m != 0 || uint64(r.length)%m != 0 {
		return errInval
	}
	size := uint64(e.Size)
	if r.off > size || uint64(r.length) > size-r.off {
		if r.typ == cmdWrite || r.typ == cmdWriteZeroes {
			return errNoSpc
		}
		return errInval
	}
	return 0
}

// run executes one checked request and queues its reply.
func (t *transmission) run(r request, buf *[]byte, weight int64) {
	defer t.running.Done()
	defer func() { <-t.slots }()
	st := &t.c.s.c
	d := t.e.Dev
	off, n := int64(r.off), int64(r.length)
	var err error
	rep := reply{handle: r.handle, buf: buf, weight: weight}
	switch r.typ {
	case cmdRead:
		if err = readFull(d, *buf, off); err == nil {
			rep.data = *buf
			st.reads.Add(1)
			st.bread.Add(n)
		}
	case cmdWrite:
		if r.flags&cmdFlagFUA != 0 {
			err = writeFUA(d, *buf, off)
		} else {
			nw, werr := d.WriteAt(*buf, off)
			err = wrote(nw, len(*buf), werr)
		}
		if err == nil {
			st.writes.Add(1)
			st.bwrite.Add(n)
			if r.flags&cmdFlagFUA != 0 {
				st.fua.Add(1)
			}
		}
	case cmdFlush:
		if err = syncBackend(d); err == nil {
			st.flushes.Add(1)
		}
	case cmdTrim:
		if n > 0 {
			err = d.(discarder).Discard(off, n)
		}
		if err == nil && r.flags&cmdFlagFUA != 0 {
			err = syncBackend(d)
		}
		if err == nil {
			st.trims.Add(1)
		}
	case cmdWriteZeroes:
		if err = writeZeroes(d, off, n, r.flags&cmdFlagFUA != 0); err == nil {
			st.zeroes.Add(1)
			if r.flags&cmdFlagFUA != 0 {
				st.fua.Add(1)
			}
		}
	}
	if err != nil {
		st.errs.Add(1)
		rep.errno = errnoOf(err)
		t.c.logf("command %d at %d (%d bytes): %v", r.typ, off, n, err)
	}
	t.replies <- rep
}

// errnoOf maps a backend error to the protocol's error values.
func errnoOf(err error) uint32 {
	switch {
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT), errors.Is(err, syscall.EFBIG):
		return errNoSpc
	case errors.Is(err, os.ErrPermission), errors.Is(err, syscall.EROFS):
		return errPerm
	case errors.Is(err, syscall.EINVAL):
		return errInval
	}
	return errIO
}

// writeReplies sends replies until the channel closes. After a write error
// (the client went away) it keeps draining the channel, so requests still
// running finish, and stops the reader.
func (c *conn) writeReplies(ss *session, replies <-chan reply, budget *semaphore.Weighted) error {
	var werr error
	var h [16]byte
	binary.BigEndian.PutUint32(h[0:], magicSimpleRep)
	for r := range replies {
		if werr == nil {
			binary.BigEndian.PutUint32(h[4:], r.errno)
			binary.BigEndian.PutUint64(h[8:], r.handle)
			if _, err := ss.w.Write(h[:]); err != nil {
				werr = err
			} else if _, err := ss.w.Write(r.data); err != nil {
				werr = err
			} else if len(replies) == 0 {
				werr = ss.w.Flush()
			}
			if werr != nil {
				c.nc.SetReadDeadline(time.Now())
			}
		}
		putBuf(r.buf)
		if r.weight > 0 {
			budget.Release(r.weight)
		}
	}
	if werr == nil {
		werr = ss.w.Flush()
	}
	if werr != nil {
		return fmt.Errorf("nbd: sending replies: %w", werr)
	}
	return nil
}
