package logwrites

import (
	"io"
)

// headerReadAhead is the size of a headerReader's buffer: the read-ahead
// used while consecutive headers lie close together.
const headerReadAhead = 64 << 10

// headerReader serves the reads of a header-only pass over a log (Open's
// callers iterating Entries, Find, the planning pass of a last-writer-wins
// replay). While headers lie within headerReadAhead of each other (small
// entries), a miss fills the whole buffer, so one read brings many headers;
// once they lie further apart (large entries), each header is read on its
// own, so no data is read. Reads smaller than a header (probes) and larger
// than half the buffer go straight to the log. Not safe for concurrent use.
type headerReader struct {
	r    io.ReaderAt
	buf  []byte // allocated at the first fill
	off  int64  // log offset of buf[0]
	n    int    // valid bytes in buf
	last int64  // offset of the last miss
}

func newHeaderReader(r io.ReaderAt) *headerReader { return &headerReader{r: r} }

// ReadAt reads len(p) bytes at off, from the buffer when it holds them.
func (h *headerReader) ReadAt(p []byte, off int64) (int, error) {
	if off >= h.off && off+int64(len(p)) <= h.off+int64(h.n) {
		return copy(p, h.buf[off-h.off:]), nil
	}
	gap := off - h.last
	h.last = off
	if len(p) < HeaderSize || len(p) > headerReadAhead/16 || gap < 0 || gap > headerReadAhead {
		return h.r.ReadAt(p, off)
	}
	if h.buf == nil {
		// No larger than the log (a few one-byte probes tell).
		h.buf = make([]byte, probeSize(h.r, headerReadAhead))
	}
	m, err := h.r.ReadAt(h.buf, off)
	h.off, h.n = off, max(m, 0)
	if h.n >= len(p) {
		return copy(p, h.buf), nil
	}
	if err == nil {
		err = io.EOF
	}
	return copy(p, h.buf[:h.n]), err
}
