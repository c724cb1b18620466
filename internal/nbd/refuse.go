package nbd

import (
	"encoding/binary"
	"fmt"
	"io"
)

// Refusing a connection beyond Options.MaxConns. Closing it at once leaves
// the client to guess (libnbd reports an invalid state); instead the
// server greets it and answers every option with NBD_REP_ERR_POLICY and a
// message the client prints ("too many connections ..."), then closes.
// At most maxRefusing connections are refused this way at once; beyond
// that they are closed at once, so a flood of connections costs at most
// that many handshakes (each bounded by Options.HandshakeTimeout).

// maxRefusing bounds the connections being refused with a message at once.
const maxRefusing = 4

// maxRefusedOptions is how many options a refused client may send before
// the server closes the connection.
const maxRefusedOptions = 16

// refuseNegotiation greets the client, answers its options with
// NBD_REP_ERR_POLICY and why, and returns when it aborts, asks for an
// export with NBD_OPT_EXPORT_NAME (which cannot be answered with an
// error), sends something malformed, or has sent maxRefusedOptions.
func (c *conn) refuseNegotiation(ss *session, why string) error {
	var hello [18]byte
	binary.BigEndian.PutUint64(hello[0:], magicNBD)
	binary.BigEndian.PutUint64(hello[8:], magicOpt)
	binary.BigEndian.PutUint16(hello[16:], flagFixedNewstyle|flagNoZeroes)
	if _, err := ss.w.Write(hello[:]); err != nil {
		return err
	}
	if err := ss.w.Flush(); err != nil {
		return err
	}
	var cf [4]byte
	if _, err := io.ReadFull(ss.r, cf[:]); err != nil {
		return fmt.Errorf("nbd: reading client flags: %w", err)
	}
	var hdr [optHeaderSize]byte
	for range maxRefusedOptions {
		if _, err := io.ReadFull(ss.r, hdr[:]); err != nil {
			return fmt.Errorf("nbd: reading an option: %w", err)
		}
		h, err := parseOptionHeader(hdr[:])
		if err != nil {
			return err
		}
		if _, err := io.CopyN(io.Discard, ss.r, int64(h.length)); err != nil {
			return fmt.Errorf("nbd: reading option %d data: %w", h.opt, err)
		}
		switch h.opt {
		case optAbort:
			_ = ss.optReply(h.opt, repAck, nil) // the client need not read it
			return nil
		case optExportName:
			return nil
		}
		if err := ss.optReply(h.opt, repErrPolicy, []byte(why)); err != nil {
			return err
		}
	}
	return nil
}
