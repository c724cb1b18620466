package nbd

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
)

// session is a connection's byte streams, replaced after STARTTLS.
type session struct {
	nc       net.Conn // the raw connection (deadlines, Close)
	rw       io.ReadWriter
	r        *bufio.Reader
	w        *bufio.Writer
	noZeroes bool
	tls      bool
}

func newSession(nc net.Conn) *session {
	s := &session{nc: nc}
	s.use(nc)
	return s
}

func (ss *session) use(rw io.ReadWriter) {
	ss.rw = rw
	ss.r = bufio.NewReaderSize(rw, 64<<10)
	ss.w = bufio.NewWriterSize(rw, 64<<10)
}

// negotiate runs the fixed newstyle handshake and returns the export the
// client chose (with NBD_OPT_GO or NBD_OPT_EXPORT_NAME).
func (c *conn) negotiate(ss *session) (*Export, error) {
	var hello [18]byte
	binary.BigEndian.PutUint64(hello[0:], magicNBD)
	binary.BigEndian.PutUint64(hello[8:], magicOpt)
	binary.BigEndian.PutUint16(hello[16:], flagFixedNewstyle|flagNoZeroes)
	if _, err := ss.w.Write(hello[:]); err != nil {
		return nil, err
	}
	if err := ss.w.Flush(); err != nil {
		return nil, err
	}
	var cf [4]byte
	if _, err := io.ReadFull(ss.r, cf[:]); err != nil {
		return nil, fmt.Errorf("nbd: reading client flags: %w", err)
	}
	flags := binary.BigEndian.Uint32(cf[:])
	if flags&flagFixedNewstyle == 0 || flags&^clientFlagsKnown != 0 {
		return nil, fmt.Errorf("%w: %#x (fixed newstyle, bit 0, is required; known bits %#x)", ErrClientFlags, flags, clientFlagsKnown)
	}
	ss.noZeroes = flags&flagNoZeroes != 0
	s := c.s
	var hdr [optHeaderSize]byte
	for {
		if _, err := io.ReadFull(ss.r, hdr[:]); err != nil {
			return nil, fmt.Errorf("nbd: reading an option: %w", err)
		}
		h, err := parseOptionHeader(hdr[:])
		if err != nil {
			return nil, err
		}
		data := make([]byte, h.length)
		if _, err := io.ReadFull(ss.r, data); err != nil {
			return nil, fmt.Errorf("nbd: reading option %d data: %w", h.opt, err)
		}
		if s.o.TLS != nil && !ss.tls && h.opt != optStartTLS && h.opt != optAbort {
			if h.opt == optExportName {
				return nil, fmt.Errorf("%w: NBD_OPT_EXPORT_NAME before NBD_OPT_STARTTLS", ErrTLSRequired)
			}
			if err := ss.optReply(h.opt, repErrTLSReqd, []byte("TLS required: use NBD_OPT_STARTTLS")); err != nil {
				return nil, err
			}
			continue
		}
		switch h.opt {
		case optExportName:
			e := s.export(string(data))
			if e == nil {
				return nil, fmt.Errorf("%w: %q (NBD_OPT_EXPORT_NAME)", ErrUnknownExport, data)
			}
			if n, ok := s.admit(c); !ok {
				return nil, fmt.Errorf("%w: NBD_OPT_EXPORT_NAME with %d connections served (Options.MaxConns), closing: that option cannot be refused", ErrTooManyConnections, n)
			}
			var b [10 + 124]byte
			binary.BigEndian.PutUint64(b[0:], uint64(e.Size))
			binary.BigEndian.PutUint16(b[8:], e.transmissionFlags())
			n := len(b)
			if ss.noZeroes {
				n = 10
			}
			if _, err := ss.w.Write(b[:n]); err != nil {
				return nil, err
			}
			return e, ss.w.Flush()
		case optAbort:
			_ = ss.optReply(h.opt, repAck, nil) // the client need not read it
			return nil, ErrAborted
		case optList:
			if len(data) != 0 {
				err = ss.optReply(h.opt, repErrInvalid, []byte("NBD_OPT_LIST takes no data"))
				break
			}
			for i := range s.exports {
				name := s.exports[i].Name
				d := make([]byte, 4+len(name))
				binary.BigEndian.PutUint32(d, uint32(len(name)))
				copy(d[4:], name)
				if err = ss.optReply(h.opt, repServer, d); err != nil {
					return nil, err
				}
			}
			err = ss.optReply(h.opt, repAck, nil)
		case optStartTLS:
			switch {
			case s.o.TLS == nil:
				err = ss.optReply(h.opt, repErrUnsup, []byte("TLS is not configured"))
			case ss.tls || len(data) != 0:
				err = ss.optReply(h.opt, repErrInvalid, []byte("STARTTLS takes no data and comes once"))
			default:
				if err = ss.optReply(h.opt, repAck, nil); err != nil {
					return nil, err
				}
				if ss.r.Buffered() != 0 {
					return nil, fmt.Errorf("%w: client sent data before the TLS handshake", ErrMalformed)
				}
				tc := tls.Server(ss.nc, s.o.TLS)
				if err = tc.Handshake(); err != nil {
					return nil, fmt.Errorf("nbd: TLS handshake: %w", err)
				}
				ss.use(tc)
				ss.tls = true
			}
		case optInfo, optGo:
			e, ok, rerr := c.info(ss, h.opt, data)
			if rerr != nil {
				return nil, rerr
			}
			if ok && h.opt == optGo {
				return e, nil
			}
		default:
			err = ss.optReply(h.opt, repErrUnsup, []byte(fmt.Sprintf("option %d is not supported", h.opt)))
		}
		if err != nil {
			return nil, err
		}
	}
}

// info answers NBD_OPT_INFO or NBD_OPT_GO; ok says the export was found
// and acknowledged.
func (c *conn) info(ss *session, opt uint32, data []byte) (*Export, bool, error) {
	req, err := parseInfoRequest(data)
	if err != nil {
		return nil, false, ss.optReply(opt, repErrInvalid, []byte(err.Error()))
	}
	e := c.s.export(req.name)
	if e == nil {
		return nil, false, ss.optReply(opt, repErrUnknown, []byte(fmt.Sprintf("no export named %q", req.name)))
	}
	if opt == optGo {
		if n, ok := c.s.admit(c); !ok {
			c.logf("NBD_OPT_GO refused: %d connections served (Options.MaxConns)", n)
			return nil, false, ss.optReply(opt, repErrPolicy, []byte(fmt.Sprintf(
				"too many connections: this server serves %d at once; try again when one has ended", c.s.o.MaxConns)))
		}
	}
	var b [14]byte
	binary.BigEndian.PutUint16(b[0:], infoExport)
	binary.BigEndian.PutUint64(b[2:], uint64(e.Size))
	binary.BigEndian.PutUint16(b[10:], e.transmissionFlags())
	if err := ss.optReply(opt, repInfo, b[:12]); err != nil {
		return nil, false, err
	}
	for _, typ := range req.infos {
		var d []byte
		switch typ {
		case infoName:
			d = append(binary.BigEndian.AppendUint16(nil, infoName), e.Name...)
		case infoDescription:
			if e.Description == "" {
				continue
			}
			d = append(binary.BigEndian.AppendUint16(nil, infoDescription), e.Description...)
		default:
			continue // block size is always sent below; others are unknown
		}
		if err := ss.optReply(opt, repInfo, d); err != nil {
			return nil, false, err
		}
	}
	d := binary.BigEndian.AppendUint16(nil, infoBlockSize)
	d = binary.BigEndian.AppendUint32(d, e.MinBlock)
	d = binary.BigEndian.AppendUint32(d, e.PreferredBlock)
	d = binary.BigEndian.AppendUint32(d, c.s.o.MaxPayload)
	if err := ss.optReply(opt, repInfo, d); err != nil {
		return nil, false, err
	}
	return e, true, ss.optReply(opt, repAck, nil)
}

// optReply sends one option reply and flushes it.
func (ss *session) optReply(opt, typ uint32, data []byte) error {
	var h [20]byte
	binary.BigEndian.PutUint64(h[0:], magicOptReply)
	binary.BigEndian.PutUint32(h[8:], opt)
	binary.BigEndian.PutUint32(h[12:], typ)
	binary.BigEndian.PutUint32(h[16:], uint32(len(data)))
	if _, err := ss.w.Write(h[:]); err != nil {
		return err
	}
	if _, err := ss.w.Write(data); err != nil {
		return err
	}
	return ss.w.Flush()
}
