package nbd

import (
	"sync"
	"sync/atomic"
)

// memDev is an in-memory Backend with Sync and Discard that counts calls;
// gate, if set, is called at the start of every ReadAt and WriteAt.
type memDev struct {
	mu    sync.RWMutex
	b     []byte
	syncs atomic.Int64
	gate  func(op string, off int64)
}

func newMemDev(n int) *memDev { return &memDev{b: make([]byte, n)} }

func (d *memDev) ReadAt(p []byte, off int64) (int, error) {
	if d.gate != nil {
		d.gate("read", off)
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	return copy(p, d.b[off:]), nil
}

func (d *memDev) WriteAt(p []byte, off int64) (int, error) {
	if d.gate != nil {
		d.gate("write", off)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return copy(d.b[off:], p), nil
}

func (d *memDev) Sync() error { d.syncs.Add(1); return nil }

func (d *memDev) Discard(off, n int64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	clear(d.b[off : off+n])
	return nil
}

func (d *memDev) bytes() []byte {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return append([]byte(nil), d.b...)
}
