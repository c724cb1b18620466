package remote

import (
	"encoding/binary"
	"fmt"
	"io"
)

// RequestType is a request of the kernel's userspace-log protocol
// (include/uapi/linux/dm-log-userspace.h), with the kernel's numbers.
type RequestType uint32

// The request types of protocol version 3.
const (
	RequestCtr                RequestType = 1  // DM_ULOG_CTR
	RequestDtr                RequestType = 2  // DM_ULOG_DTR
	RequestPresuspend         RequestType = 3  // DM_ULOG_PRESUSPEND
	RequestPostsuspend        RequestType = 4  // DM_ULOG_POSTSUSPEND
	RequestResume             RequestType = 5  // DM_ULOG_RESUME
	RequestGetRegionSize      RequestType = 6  // DM_ULOG_GET_REGION_SIZE
	RequestIsClean            RequestType = 7  // DM_ULOG_IS_CLEAN
	RequestInSync             RequestType = 8  // DM_ULOG_IN_SYNC
	RequestFlush              RequestType = 9  // DM_ULOG_FLUSH
	RequestMarkRegion         RequestType = 10 // DM_ULOG_MARK_REGION
	RequestClearRegion        RequestType = 11 // DM_ULOG_CLEAR_REGION
	RequestGetResyncWork      RequestType = 12 // DM_ULOG_GET_RESYNC_WORK
	RequestSetRegionSync      RequestType = 13 // DM_ULOG_SET_REGION_SYNC
	RequestGetSyncCount       RequestType = 14 // DM_ULOG_GET_SYNC_COUNT
	RequestStatusInfo         RequestType = 15 // DM_ULOG_STATUS_INFO
	RequestStatusTable        RequestType = 16 // DM_ULOG_STATUS_TABLE
	RequestIsRemoteRecovering RequestType = 17 // DM_ULOG_IS_REMOTE_RECOVERING
)

var requestNames = [...]string{
	RequestCtr: "CTR", RequestDtr: "DTR", RequestPresuspend: "PRESUSPEND",
	RequestPostsuspend: "POSTSUSPEND", RequestResume: "RESUME",
	RequestGetRegionSize: "GET_REGION_SIZE", RequestIsClean: "IS_CLEAN",
	RequestInSync: "IN_SYNC", RequestFlush: "FLUSH", RequestMarkRegion: "MARK_REGION",
	RequestClearRegion: "CLEAR_REGION", RequestGetResyncWork: "GET_RESYNC_WORK",
	RequestSetRegionSync: "SET_REGION_SYNC", RequestGetSyncCount: "GET_SYNC_COUNT",
	RequestStatusInfo: "STATUS_INFO", RequestStatusTable: "STATUS_TABLE",
	RequestIsRemoteRecovering: "IS_REMOTE_RECOVERING",
}

// String returns the kernel's name without the DM_ULOG_ prefix.
func (t RequestType) String() string {
	if t.Valid() {
		return requestNames[t]
	}
	return fmt.Sprintf("RequestType(%d)", uint32(t))
}

// Valid reports whether t is one of the protocol's request types.
func (t RequestType) Valid() bool { return t >= RequestCtr && t <= RequestIsRemoteRecovering }

// Wire constants.
const (
	// Magic starts every frame: "DMUL" as a little-endian uint32.
	Magic = 0x4C554D44
	// Version is the protocol version spoken (DM_ULOG_REQUEST_VERSION).
	Version = 3
	// HeaderSize is the size of the fixed frame header.
	HeaderSize = 168
	// MaxUUIDLen is the longest log UUID (the kernel's DM_UUID_LEN-1).
	MaxUUIDLen = 128
	// MaxPayload is the hard limit on a frame's payload. A frame that
	// announces more is refused and its connection dropped.
	MaxPayload = 64 << 10
	// MaxRegionsPerRequest is how many regions one MARK_REGION,
	// CLEAR_REGION or integrated FLUSH request carries at most.
	MaxRegionsPerRequest = MaxPayload / 8
	// requestMask selects the type from the request_type field; the other
	// 24 bits are reserved and must be zero.
	requestMask = 0xFF
)

// Header is the fixed part of a frame, little-endian on the wire:
//
//	off  size field
//	  0     4 magic "DMUL"
//	  4     4 version (3)
//	  8     4 seq: a reply carries its request's seq
//	 12     4 request type (low 8 bits; the rest reserved, zero)
//	 16     4 error: 0, or a negative errno in a reply
//	 20     4 data size: payload bytes after the header (≤ MaxPayload)
//	 24     8 luid: the node (client) the request speaks for
//	 32   129 uuid: the log's UUID, NUL-padded (at most 128 bytes)
//	161     7 padding, zero
type Header struct {
	Version  uint32
	Seq      uint32
	Type     RequestType
	Error    int32
	DataSize uint32
	LUID     uint64
	UUID     string
}

// appendHeader appends the encoding of h to b. The UUID must have been
// checked (≤ MaxUUIDLen bytes, no NUL).
func appendHeader(b []byte, h *Header) []byte {
	var buf [HeaderSize]byte
	binary.LittleEndian.PutUint32(buf[0:], Magic)
	binary.LittleEndian.PutUint32(buf[4:], h.Version)
	binary.LittleEndian.PutUint32(buf[8:], h.Seq)
	binary.LittleEndian.PutUint32(buf[12:], uint32(h.Type))
	binary.LittleEndian.PutUint32(buf[16:], uint32(h.Error))
	binary.LittleEndian.PutUint32(buf[20:], h.DataSize)
	binary.LittleEndian.PutUint64(buf[24:], h.LUID)
	copy(buf[32:32+MaxUUIDLen], h.UUID)
	return append(b, buf[:]...)
}

// AppendFrame appends a whole frame (header and payload) to b; the
// header's DataSize is set from the payload. It fails if the UUID or the
// payload is too long.
func AppendFrame(b []byte, h Header, payload []byte) ([]byte, error) {
	if err := checkUUID(h.UUID); err != nil {
		return b, err
	}
	if len(payload) > MaxPayload {
		return b, fmt.Errorf("%w: %d bytes (limit %d)", ErrFrameTooLarge, len(payload), MaxPayload)
	}
	h.DataSize = uint32(len(payload))
	b = appendHeader(b, &h)
	return append(b, payload...), nil
}

func checkUUID(u string) error {
	if len(u) > MaxUUIDLen {
		return fmt.Errorf("%w: %d bytes (limit %d)", ErrUUIDTooLong, len(u), MaxUUIDLen)
	}
	for i := 0; i < len(u); i++ {
		if u[i] == 0 {
			return fmt.Errorf("%w: UUID contains a NUL byte", ErrBadFrame)
		}
	}
	return nil
}

// HeaderError describes a header that was read whole but is not
// acceptable; the frame's payload is still on the stream (Skip bytes), so
// a server can answer with an error and go on reading.
type HeaderError struct {
	Header Header
	Err    error
}

// Error names the frame and the reason.
func (e *HeaderError) Error() string {
	return fmt.Sprintf("remote: frame seq %d (%v): %v", e.Header.Seq, e.Header.Type, e.Err)
}

// Unwrap returns the reason, which wraps a sentinel.
func (e *HeaderError) Unwrap() error { return e.Err }

// decodeHeader decodes a header. Errors that leave the stream in step
// (unknown type, bad UUID, wrong version) are returned as *HeaderError;
// a bad magic or an oversized payload is returned plainly: the stream
// cannot be trusted any more.
//
// prevUUID is reused, without allocating, when the frame carries the same
// UUID (the common case: a connection speaks for one log).
func decodeHeader(buf *[HeaderSize]byte, prevUUID string) (Header, error) {
	var h Header
	if m := binary.LittleEndian.Uint32(buf[0:]); m != Magic {
		return h, fmt.Errorf("%w: bad magic %#08x", ErrBadFrame, m)
	}
	h.Version = binary.LittleEndian.Uint32(buf[4:])
	h.Seq = binary.LittleEndian.Uint32(buf[8:])
	h.Type = RequestType(binary.LittleEndian.Uint32(buf[12:]))
	h.Error = int32(binary.LittleEndian.Uint32(buf[16:]))
	h.DataSize = binary.LittleEndian.Uint32(buf[20:])
	h.LUID = binary.LittleEndian.Uint64(buf[24:])
	if h.DataSize > MaxPayload {
		return h, fmt.Errorf("%w: payload of %d bytes (limit %d)", ErrFrameTooLarge, h.DataSize, MaxPayload)
	}
	u := buf[32 : 32+MaxUUIDLen+1]
	n := 0
	for n < len(u) && u[n] != 0 {
		n++
	}
	if n > MaxUUIDLen {
		return h, &HeaderError{h, fmt.Errorf("%w: not NUL-terminated within %d bytes", ErrUUIDTooLong, MaxUUIDLen)}
	}
	if string(u[:n]) == prevUUID {
		h.UUID = prevUUID
	} else {
		h.UUID = string(u[:n])
	}
	for _, c := range u[n:] {
		if c != 0 {
			return h, &HeaderError{h, fmt.Errorf("%w: bytes after the UUID's NUL", ErrBadFrame)}
		}
	}
	for _, c := range buf[32+MaxUUIDLen+1:] {
		if c != 0 {
			return h, &HeaderError{h, fmt.Errorf("%w: nonzero padding", ErrBadFrame)}
		}
	}
	if h.Version != Version {
		return h, &HeaderError{h, fmt.Errorf("%w: peer speaks version %d, this end %d", ErrVersion, h.Version, Version)}
	}
	if uint32(h.Type)&^requestMask != 0 {
		return h, &HeaderError{h, fmt.Errorf("%w: reserved bits set in request type %#x", ErrUnknownRequest, uint32(h.Type))}
	}
	if !h.Type.Valid() {
		return h, &HeaderError{h, fmt.Errorf("%w: %d", ErrUnknownRequest, uint32(h.Type))}
	}
	return h, nil
}

// FrameReader reads frames from a stream. Its buffer grows to at most
// HeaderSize+MaxPayload bytes, whatever the stream claims, so a hostile
// peer cannot make it allocate more.
//
// A FrameReader is not safe for concurrent use.
type FrameReader struct {
	r    io.Reader
	hdr  [HeaderSize]byte
	buf  []byte
	uuid string // the last frame's UUID
	// OnHeader, if set, is called once a frame's first byte has been read
	// and before the rest of it is: a server sets a read deadline there so
	// a peer stalling mid-frame is dropped, while an idle peer is not.
	OnHeader func()
}

// NewFrameReader returns a reader of frames from r.
func NewFrameReader(r io.Reader) *FrameReader { return &FrameReader{r: r} }

// ReadFrame reads the next frame. The payload is valid until the next
// call. At a clean end of stream it returns io.EOF; a stream that ends
// mid-frame gives io.ErrUnexpectedEOF. A *HeaderError means the frame was
// consumed whole (payload included) but is not acceptable: the caller
// may answer it and read on. Any other error wraps ErrBadFrame or
// ErrFrameTooLarge (the stream is out of step: drop it) or is the read
// error.
func (fr *FrameReader) ReadFrame() (Header, []byte, error) {
	if _, err := io.ReadFull(fr.r, fr.hdr[:1]); err != nil {
		return Header{}, nil, err
	}
	if fr.OnHeader != nil {
		fr.OnHeader()
	}
	if _, err := io.ReadFull(fr.r, fr.hdr[1:]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return Header{}, nil, err
	}
	h, herr := decodeHeader(&fr.hdr, fr.uuid)
	fr.uuid = h.UUID
	var he *HeaderError
	if herr != nil && !asHeaderError(herr, &he) {
		return h, nil, herr
	}
	n := int(h.DataSize)
	if cap(fr.buf) < n {
		fr.buf = make([]byte, n)
	}
	fr.buf = fr.buf[:n]
	if _, err := io.ReadFull(fr.r, fr.buf); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return h, nil, err
	}
	return h, fr.buf, herr
}

func asHeaderError(err error, he **HeaderError) bool {
	e, ok := err.(*HeaderError)
	if ok {
		*he = e
	}
	return ok
}
