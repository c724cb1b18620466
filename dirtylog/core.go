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
	c.init(n, o.Sync == NoSync)
	return c, nil
}

// RegionSize returns the region size in bytes.
func (c *Core) RegionSize() int64 { return c.opts.RegionSize }

// RegionCount returns the number of regions.
func (c *Core) RegionCount() uint64 { return c.count }

// IsClean reports whether r has no write in flight since its last clear.
func (c *Core) IsClean(_ context.Context, r Region) (bool, error) {
	if err := c.check(r); err != nil {
		return false, err
	}
	return c.isClean(r), nil
}

// InSync reports whether r is in sync. It never blocks.
func (c *Core) InSync(_ context.Context, r Region) (bool, error) {
	if err := c.check(r); err != nil {
		return false, err
	}
	return c.inSync(r), nil
}

// MarkRegion marks r dirty in memory.
func (c *Core) MarkRegion(r Region) { c.mark(r) }

// ClearRegion marks r clean in memory.
func (c *Core) ClearRegion(r Region) { c.clear(r) }

// Flush does nothing: a core log has no stable storage.
func (c *Core) Flush(context.Context) error {
	if c.closed.Load() {
		return ErrClosed
	}
	return nil
}

// ResyncWork hands out the next out-of-sync region.
func (c *Core) ResyncWork(context.Context) (Region, bool, error) {
	r, ok := c.resyncWork()
	return r, ok, nil
}

// SetRegionSync records r's sync state and ends its recovery.
func (c *Core) SetRegionSync(r Region, inSync bool) { c.setRegionSync(r, inSync) }

// SyncCount returns the number of regions in sync.
func (c *Core) SyncCount() uint64 { return c.getSyncCount() }

// Local is true: a core log is not shared (see IsLocal).
func (c *Core) Local() bool { return true }

// Volatile is true: Flush makes nothing durable (see IsVolatile).
func (c *Core) Volatile() bool { return true }

// RemoteRecovering is always false for a local log.
func (c *Core) RemoteRecovering(context.Context, Region) (bool, error) { return false, nil }

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

// Close marks the log closed; later Flushes fail with ErrClosed.
func (c *Core) Close() error {
	c.closed.Store(true)
	return nil
}

var _ Log = (*Core)(nil)
