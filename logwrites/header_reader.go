package logwrites

import (
	"io"
)

// headerReadAhead is the largest read of a headerReader: the read-ahead
// used while headers lie close together.
const headerReadAhead = 64 << 10

// headerReader serves the reads of a header-only pass over a log (Entries,
// Find, the planning pass of a last-writer-wins replay) with reads that
// adapt to the spacing of the headers: a miss just past the bytes read
// last (small entries) quadruples the next read, up to headerReadAhead, so
// one read brings many headers; a read that served fewer than two headers
// (large entries) makes the next one a quarter, down to the size asked, so
// that no data is read. Reads smaller than a header (probes) and larger
// than a sixteenth of the buffer go straight to the log. Not safe for
// concurrent use.
type headerReader struct {
	r    io.ReaderAt
	buf  []byte // allocated at the first fill
	off  int64  // log offset of buf[0]
	n    int    // valid bytes in buf
	size int    // the size of the next fill
	hits int    // reads served by the last fill
}

func newHeaderReader(r io.ReaderAt) *headerReader { return &headerReader{r: r, size: 4096} }

// ReadAt reads len(p) bytes at off, from the buffer when it holds them.
func (h *headerReader) ReadAt(p []byte, off int64) (int, error) {
	if off >= h.off && off+int64(len(p)) <= h.off+int64(h.n) {
		h.hits++
		return copy(p, h.buf[off-h.off:]), nil
	}
	if h.buf == nil {
		// No larger than the log (a few one-byte probes tell).
		h.buf = make([]byte, probeSize(h.r, headerReadAhead))
	}
	if len(p) < HeaderSize || len(p) > len(h.buf)/16 {
		return h.r.ReadAt(p, off)
	}
	if end := h.off + int64(h.n); h.n > 0 && off >= end && off-end < int64(4*h.size) {
		h.size = min(4*h.size, len(h.buf))
	} else if h.n > 0 && h.hits < 2 {
		h.size = max(h.size/4, len(p))
	}
	h.size = max(h.size, len(p))
	m, err := h.r.ReadAt(h.buf[:h.size], off)
	h.off, h.n, h.hits = off, max(m, 0), 1
	if h.n >= len(p) {
		return copy(p, h.buf), nil
	}
	if err == nil {
		err = io.EOF
	}
	return copy(p, h.buf[:h.n]), err
}
