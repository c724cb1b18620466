package logwrites

import (
	"errors"
	"fmt"
	"io"
)

// window is a read-ahead buffer over a log, so that a sequential pass
// (Replay) reads the log in large chunks and writes data to the target
// straight from the buffer, with no extra copy. It is an io.ReaderAt for
// header reads. Not safe for concurrent use.
type window struct {
	r    io.ReaderAt
	size int    // the window's size
	buf  []byte // allocated at the first fill: a replay of staged entries needs none
	off  int64  // log offset of buf[0]
	n    int    // valid bytes in buf
}

// newWindow returns a window of up to max bytes, smaller if the log is
// smaller (probed), so that reading a tiny log never allocates much more
// than its size.
func newWindow(r io.ReaderAt, max int) *window {
	return &window{r: r, size: probeSize(r, max)}
}

// probeSize returns max, or max/16^k down to 4096 for a log shorter than
// max: the largest of those sizes that the log reaches, so a buffer of that
// size is never much larger than the log (at most 4096 bytes for a tiny
// one) and never larger than max. It costs at most a few 1-byte reads.
func probeSize(r io.ReaderAt, max int) int {
	size := max
	var one [1]byte
	for size > 4096 {
		if n, _ := r.ReadAt(one[:], int64(size-1)); n == 1 {
			break
		}
		size /= 16
	}
	return size
}

// fill makes [off, off+n) resident, reading a whole window from off.
func (w *window) fill(off int64, n int) error {
	if off >= w.off && off+int64(n) <= w.off+int64(w.n) {
		return nil
	}
	if w.buf == nil {
		w.buf = make([]byte, w.size)
	}
	m, err := w.r.ReadAt(w.buf, off)
	w.off, w.n = off, m
	if m >= n {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: %d of %d bytes at offset %d", ErrTruncated, m, n, off)
	}
	return err
}

// holds reports whether log bytes [off, off+n) are resident.
func (w *window) holds(off int64, n int) bool {
	return off >= w.off && off+int64(n) <= w.off+int64(w.n)
}

// view returns n bytes (n <= len(buf)) at off, valid until the next call.
func (w *window) view(off int64, n int) ([]byte, error) {
	if err := w.fill(off, n); err != nil {
		return nil, err
	}
	i := int(off - w.off)
	return w.buf[i : i+n], nil
}

// next returns the bytes from off on, at most max of them and at least one,
// as far as they are resident, refilling from off only if off itself is not:
// a sequential pass reads each byte of the log once, never re-reading the
// part of an entry's data that the previous fill already holds. The slice
// is valid until the next call.
func (w *window) next(off int64, max int) ([]byte, error) {
	if off < w.off || off >= w.off+int64(w.n) {
		if err := w.fill(off, 1); err != nil {
			return nil, err
		}
	}
	i := int(off - w.off)
	return w.buf[i:min(w.n, i+max)], nil
}

// ReadAt serves reads from the window, refilling it as needed; reads
// larger than the window go straight to the log.
func (w *window) ReadAt(p []byte, off int64) (int, error) {
	inside := off >= w.off && off+int64(len(p)) <= w.off+int64(w.n)
	// Large reads, and tiny ones outside the window (the probe for the
	// end of an entry's data), go straight to the log: refilling for them
	// would throw away the data about to be replayed.
	if len(p) > w.size || (!inside && len(p) < HeaderSize) {
		return w.r.ReadAt(p, off)
	}
	v, err := w.view(off, len(p))
	if err != nil {
		return 0, err
	}
	return copy(p, v), nil
}
