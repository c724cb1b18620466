package nbd

import (
	"encoding/binary"
	"fmt"
)

// optionHeader is the fixed part of a client's option: magic, option,
// length of the data that follows.
type optionHeader struct {
	opt    uint32
	length uint32
}

// parseOptionHeader decodes the 16-byte header of a client option. Data
// longer than maxOptionLength is refused (the connection is then closed
// rather than read for megabytes).
func parseOptionHeader(b []byte) (optionHeader, error) {
	if len(b) != optHeaderSize {
		return optionHeader{}, fmt.Errorf("%w: option header of %d bytes, want %d", ErrMalformed, len(b), optHeaderSize)
	}
	if m := binary.BigEndian.Uint64(b); m != magicOpt {
		return optionHeader{}, fmt.Errorf("%w: option magic %#x, want %#x", ErrBadMagic, m, uint64(magicOpt))
	}
	h := optionHeader{opt: binary.BigEndian.Uint32(b[8:]), length: binary.BigEndian.Uint32(b[12:])}
	if h.length > maxOptionLength {
		return h, fmt.Errorf("%w: option %d carries %d bytes, at most %d accepted", ErrOptionTooLong, h.opt, h.length, maxOptionLength)
	}
	return h, nil
}

// infoRequest is the data of NBD_OPT_INFO and NBD_OPT_GO.
type infoRequest struct {
	name  string
	infos []uint16
}

// parseInfoRequest decodes NBD_OPT_INFO / NBD_OPT_GO data: a 32-bit name
// length, the name, a 16-bit count and that many 16-bit information types.
func parseInfoRequest(data []byte) (infoRequest, error) {
	if len(data) < 6 {
		return infoRequest{}, fmt.Errorf("%w: info request of %d bytes, at least 6 needed", ErrMalformed, len(data))
	}
	nlen := binary.BigEndian.Uint32(data)
	if nlen > maxNameLength {
		return infoRequest{}, fmt.Errorf("%w: export name of %d bytes, at most %d allowed", ErrMalformed, nlen, maxNameLength)
	}
	if uint64(len(data)) < 4+uint64(nlen)+2 {
		return infoRequest{}, fmt.Errorf("%w: export name of %d bytes overruns the %d-byte option", ErrMalformed, nlen, len(data))
	}
	r := infoRequest{name: string(data[4 : 4+nlen])}
	rest := data[4+nlen:]
	n := int(binary.BigEndian.Uint16(rest))
	rest = rest[2:]
	if len(rest) != 2*n {
		return infoRequest{}, fmt.Errorf("%w: %d information requests need %d bytes, option has %d", ErrMalformed, n, 2*n, len(rest))
	}
	for i := 0; i < n; i++ {
		r.infos = append(r.infos, binary.BigEndian.Uint16(rest[2*i:]))
	}
	return r, nil
}

// request is a transmission-phase request header.
type request struct {
	flags  uint16
	typ    uint16
	handle uint64
	off    uint64
	length uint32
}

// parseRequest decodes a 28-byte request header.
func parseRequest(b []byte) (request, error) {
	if len(b) != requestSize {
		return request{}, fmt.Errorf("%w: request header of %d bytes, want %d", ErrMalformed, len(b), requestSize)
	}
	if m := binary.BigEndian.Uint32(b); m != magicRequest {
		return request{}, fmt.Errorf("%w: request magic %#x, want %#x", ErrBadMagic, m, uint32(magicRequest))
	}
	return request{
		flags:  binary.BigEndian.Uint16(b[4:]),
		typ:    binary.BigEndian.Uint16(b[6:]),
		handle: binary.BigEndian.Uint64(b[8:]),
		off:    binary.BigEndian.Uint64(b[16:]),
		length: binary.BigEndian.Uint32(b[24:]),
	}, nil
}

// hasPayload says whether a request is followed by length bytes of data.
func (r request) hasPayload() bool { return r.typ == cmdWrite }
