package e2e

import (
	"errors"
	"sync"
	"sync/atomic"

	"github.com/dmlog/dmlog/dirtylog/testdev"
)

var errPowerCut = errors.New("e2e: power cut")

// power is the power switch of a set of devices (two legs and a log):
// cutting it is atomic with respect to every operation on them, and every
// later operation fails.
type power struct {
	mu  sync.RWMutex
	off bool
}

func (p *power) cut() {
	p.mu.Lock()
	p.off = true
	p.mu.Unlock()
}

// poweredDev is a crash-capable in-memory device on a power switch.
// With lie it acknowledges Sync without syncing: a device whose cache
// lies, for the negative control.
type poweredDev struct {
	p   *power
	mem *testdev.Memory
	lie bool
}

func (d *poweredDev) do(f func() error) error {
	d.p.mu.RLock()
	defer d.p.mu.RUnlock()
	if d.p.off {
		return errPowerCut
	}
	return f()
}

func (d *poweredDev) ReadAt(b []byte, off int64) (n int, err error) {
	if e := d.do(func() error { n, err = d.mem.ReadAt(b, off); return nil }); e != nil {
		return 0, e
	}
	return n, err
}

func (d *poweredDev) WriteAt(b []byte, off int64) (n int, err error) {
	if e := d.do(func() error { n, err = d.mem.WriteAt(b, off); return nil }); e != nil {
		return 0, e
	}
	return n, err
}

func (d *poweredDev) Sync() error {
	if d.lie {
		return d.do(func() error { return nil })
	}
	return d.do(d.mem.Sync)
}

func (d *poweredDev) Discard(off, n int64) error {
	return d.do(func() error { return d.mem.Discard(off, n) })
}

func (d *poweredDev) Size() int64 { return d.mem.Size() }

// cutter wraps the device the NBD server serves: the write numbered at
// (counting from 1) cuts the power before it is issued and closes tripped;
// it and everything after it fail.
type cutter struct {
	dev interface {
		ReadAt([]byte, int64) (int, error)
		WriteAt([]byte, int64) (int, error)
		Sync() error
		Discard(int64, int64) error
	}
	p       *power
	at      int64
	writes  atomic.Int64
	once    sync.Once
	tripped chan struct{}
}

func (c *cutter) ReadAt(b []byte, off int64) (int, error) { return c.dev.ReadAt(b, off) }

func (c *cutter) WriteAt(b []byte, off int64) (int, error) {
	if n := c.writes.Add(1); c.at > 0 && n >= c.at {
		c.once.Do(func() {
			c.p.cut()
			close(c.tripped)
		})
	}
	return c.dev.WriteAt(b, off)
}

func (c *cutter) Sync() error                { return c.dev.Sync() }
func (c *cutter) Discard(off, n int64) error { return c.dev.Discard(off, n) }
