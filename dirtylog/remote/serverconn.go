package remote

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"time"
)

type memberKey struct {
	uuid string
	node NodeID
}

// serverConn is one client connection. One goroutine reads a frame,
// serves it and queues the reply, so a connection's requests are applied
// in the order sent (a client pipelines MARKs and a FLUSH and relies on
// it); replies are written out whenever no further request is buffered.
type serverConn struct {
	srv     *Server
	raw     net.Conn // as accepted; Server.Close closes it
	nc      net.Conn // raw, or the TLS conn over it; owned by serve
	id      uint64
	members map[memberKey]*hostedLog // owned by the serving goroutine
	hb      [HeaderSize]byte         // reply header scratch
}

const (
	maxErrorMessage = 512
	connBufSize     = 16 << 10
)

func (sc *serverConn) serve(tcfg *tls.Config) {
	s := sc.srv
	defer s.wg.Done()
	defer s.dropConn(sc)
	defer sc.nc.Close()
	lg := s.log.With("conn", sc.id, "remote", sc.nc.RemoteAddr().String())
	if tcfg != nil {
		tc := tls.Server(sc.nc, tcfg)
		ctx, cancel := context.WithTimeout(s.ctx, s.opts.HandshakeTimeout)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			lg.Warn("TLS handshake refused", "err", err)
			return
		}
		sc.nc = tc
		if cs := tc.ConnectionState(); len(cs.PeerCertificates) > 0 {
			lg = lg.With("peer", cs.PeerCertificates[0].Subject.CommonName)
		}
	}
	defer func() {
		for k, hl := range sc.members {
			hl.detach(k.node, sc)
		}
	}()

	// 16 KiB each way: a batch of requests is read in one system call and
	// replies to it written in one, while a thousand idle connections
	// cost 32 MiB. Larger payloads are read straight into the frame
	// buffer.
	br := bufio.NewReaderSize(sc.nc, connBufSize)
	bw := bufio.NewWriterSize(sc.nc, connBufSize)
	fr := NewFrameReader(br)
	deadline := false
	// Once a frame has begun, the rest of it must come within
	// FrameTimeout: set a read deadline unless the whole frame is already
	// buffered (the common case, which costs no timer update). The
	// payload's size is peeked from the buffered header.
	fr.OnHeader = func() {
		if n := br.Buffered(); n >= HeaderSize-1 {
			b, _ := br.Peek(HeaderSize - 1) // the first byte was consumed
			size := int(binary.LittleEndian.Uint32(b[20-1:]))
			if size > MaxPayload || n >= HeaderSize-1+size {
				return // whole, or refused before its payload is read
			}
		}
		sc.nc.SetReadDeadline(time.Now().Add(s.opts.FrameTimeout))
		deadline = true
	}
	var (
		out []byte
		h   Header // one per connection: dispatch takes its address
		p   []byte
		err error
		wdl time.Time // the write deadline last set
	)
	for {
		h, p, err = fr.ReadFrame()
		if deadline {
			sc.nc.SetReadDeadline(time.Time{})
			deadline = false
		}
		fatal := false
		var reqErr error
		if err != nil {
			var he *HeaderError
			switch {
			case errors.As(err, &he):
				reqErr = he.Err
				fatal = errors.Is(err, ErrVersion)
			case errors.Is(err, ErrFrameTooLarge):
				// Answer, then drop: the payload is not going to be read.
				reqErr, fatal = err, true
			default:
				if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
					lg.Warn("dropping connection", "err", err)
				}
				return
			}
			lg.Warn("bad request", "seq", h.Seq, "type", h.Type, "err", reqErr, "drop", fatal)
		}
		out = out[:0]
		if reqErr == nil {
			out, reqErr = sc.dispatch(&h, p, out)
		}
		rh := Header{Version: Version, Seq: h.Seq, Type: h.Type, LUID: h.LUID}
		if len(h.UUID) <= MaxUUIDLen && checkUUID(h.UUID) == nil {
			rh.UUID = h.UUID
		}
		if reqErr != nil {
			rh.Error = -errnoOf(reqErr)
			msg := reqErr.Error()
			if len(msg) > maxErrorMessage {
				msg = msg[:maxErrorMessage]
			}
			out = append(out[:0], msg...)
		}
		rh.DataSize = uint32(len(out))
		bw.Write(appendHeader(sc.hb[:0], &rh))
		bw.Write(out)
		if br.Buffered() == 0 || fatal || bw.Buffered() > connBufSize/2 {
			if now := time.Now(); wdl.Sub(now) < s.opts.WriteTimeout/2 {
				// Renewed only when half used up: a write still gets
				// between WriteTimeout/2 and WriteTimeout, without a
				// timer update per reply.
				wdl = now.Add(s.opts.WriteTimeout)
				sc.nc.SetWriteDeadline(wdl)
			}
			if err := bw.Flush(); err != nil {
				lg.Warn("dropping connection: writing reply", "err", err)
				return
			}
		}
		if fatal {
			return
		}
	}
}

func (sc *serverConn) dispatch(h *Header, p []byte, out []byte) ([]byte, error) {
	s := sc.srv
	if s.trace != nil {
		s.trace(h, p)
	}
	if h.Type == RequestCtr {
		b, err := s.ctr(sc, h, p)
		return append(out, b...), err
	}
	key := memberKey{h.UUID, h.LUID}
	hl := sc.members[key]
	if hl == nil {
		return out, ErrNoLog
	}
	if h.Type == RequestDtr {
		return out, s.dtr(sc, key, hl)
	}
	return hl.handle(s.ctx, h.LUID, h.Type, p, out)
}
