package dirtylog

import (
	"context"
	"fmt"
	"sync/atomic"
)

// Core is the kernel's "core" log: the region state lives in memory only,
// so every activation starts clean and (unless NoSync) out of sync, and
// Flush has nothing to do.
//
// Core is safe for concurrent use. MarkRegion and ClearRegion are lock-free.
type Core struct {
	regions
	opts   Options
	closed atomic.Bool
}

// NewCore returns a core log for the geometry in o.
func NewCore(o Options) (*Core, error) {
	n, err := o.regionCount()
	if err != nil {
		return nil, err
	}
	c := &Core{opts: o}
	c.init(o.RegionSize, n, o.Sync == NoSync)
	return c, nil
}

// Flush does nothing: a core log has no stable storage.
func (c *Core) Flush(context.Context) error {
	if c.closed.Load() {
		return ErrClosed
	}
	return nil
}

// Volatile is true: Flush makes nothing durable (see IsVolatile).
func (c *Core) Volatile() bool { return true }

// Suspend does nothing for a core log.
func (c *Core) Suspend(context.Context) error { return nil }

// Resume restarts the resync cursor.
func (c *Core) Resume(context.Context) error {
	c.resetCursor()
	return nil
}

// Status returns "1 core".
func (c *Core) Status() string { return "1 core" }

// Table returns "core 1 <sectors> " or "core 2 <sectors> <sync|nosync> ".
func (c *Core) Table() string {
	return "core " + tableTail(c.opts.RegionSize, c.opts.Sync)
}

// tableTail formats "<argc> <region_size> [sync |nosync ]" with argc
// counting the region size and the sync word.
func tableTail(regionSize int64, m SyncMode) string {
	if m == DefaultSync {
		return fmt.Sprintf("1 %d ", regionSize/SectorSize)
	}
	return fmt.Sprintf("2 %d %s ", regionSize/SectorSize, m)
}

// Close marks the log closed; later Flushes, and a second Close, fail
// with ErrClosed (which wraps os.ErrClosed).
func (c *Core) Close() error {
	if c.closed.Swap(true) {
		return ErrClosed
	}
	return nil
}

var _ Log = (*Core)(nil)
