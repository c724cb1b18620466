package e2e

import (
	"sync"
	"sync/atomic"

	"github.com/dmlog/dmlog/dirtylog/testdev"
	"github.com/dmlog/dmlog/mirror"
)

// liar is a device on the power switch that acknowledges Sync without
// syncing: a device whose cache lies, for the negative control.
type liar struct {
	*testdev.Powered
	p *testdev.Power
}

func (l liar) Sync() error { return l.p.Do(func() error { return nil }) }

// onPower puts m on power p, lying about Sync if lie.
func onPower(p *testdev.Power, m *testdev.Memory, lie bool) mirror.Leg {
	if lie {
		return liar{p.Device(m), p}
	}
	return p.Device(m)
}

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
	p       *testdev.Power
	at      int64
	writes  atomic.Int64
	once    sync.Once
	tripped chan struct{}
}

func (c *cutter) ReadAt(b []byte, off int64) (int, error) { return c.dev.ReadAt(b, off) }

func (c *cutter) WriteAt(b []byte, off int64) (int, error) {
	if n := c.writes.Add(1); c.at > 0 && n >= c.at {
		c.once.Do(func() {
			c.p.Cut()
			close(c.tripped)
		})
	}
	return c.dev.WriteAt(b, off)
}

func (c *cutter) Sync() error                { return c.dev.Sync() }
func (c *cutter) Discard(off, n int64) error { return c.dev.Discard(off, n) }
