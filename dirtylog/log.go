package dirtylog

import (
	"context"
	"io"
)

// Region numbers a fixed-size region of the device: region r covers bytes
// [r*RegionSize, (r+1)*RegionSize), the last region possibly shorter. It
// is a plain value, safe for concurrent use.
type Region uint64

// Log records which regions of a device may be inconsistent between the
// copies of a mirror. It is the Go form of the kernel's dm_dirty_log_type.
//
// All implementations are safe for concurrent use by multiple goroutines.
// MarkRegion and ClearRegion are on every write's path: they change memory
// only, never block, never allocate and never fail; Flush makes them
// durable. Regions at or beyond RegionCount are ignored by MarkRegion,
// ClearRegion and SetRegionSync and give ErrRegionRange elsewhere.
type Log interface {
	// RegionSize returns the region size in bytes; it never changes.
	RegionSize() int64
	// RegionCount returns the number of regions the log covers.
	RegionCount() uint64

	// IsClean reports whether no write has been in flight in r since it
	// was last cleared.
	IsClean(ctx context.Context, r Region) (bool, error)
	// InSync reports whether every copy of r holds the same data. Called
	// with a context from NonBlocking, a log that would have to wait (for
	// the network, say) returns ErrWouldBlock instead.
	InSync(ctx context.Context, r Region) (bool, error)

	// MarkRegion records, in memory, that a write to r is about to start.
	MarkRegion(r Region)
	// ClearRegion records, in memory, that no write to r is in flight and
	// every copy has its data.
	ClearRegion(r Region)
	// Flush makes every mark made before it was called durable before it
	// returns nil. Clears may reach stable storage later.
	Flush(ctx context.Context) error

	// ResyncWork hands out a region that is out of sync and that no other
	// caller is recovering; ok is false when there is none. A region handed
	// out is not handed to anyone else until SetRegionSync ends its
	// recovery. Logs differ in how many recoveries they allow at once:
	// Core and Disk hand each region out once and move on, so a caller
	// may copy several in parallel; a clustered log (remote, etcdlog)
	// allows one at a time, as the kernel's userspace log server does, and
	// returns the caller's unfinished region again until it is set. A
	// caller that copies in parallel treats a region it is already copying
	// as "no more work for now".
	ResyncWork(ctx context.Context) (r Region, ok bool, err error)
	// SetRegionSync records the outcome of a recovery (or that r went out
	// of sync) and always ends r's recovery. A region is counted once
	// however often it is set in sync.
	SetRegionSync(r Region, inSync bool)
	// SyncCount returns the number of regions in sync.
	SyncCount() uint64
	// RemoteRecovering reports whether another node is resyncing r, so a
	// write to it must wait. Local logs always return false.
	RemoteRecovering(ctx context.Context, r Region) (bool, error)

	// Suspend quiesces the log, making its state durable.
	Suspend(ctx context.Context) error
	// Resume reloads the log's state and restarts the resync cursor.
	Resume(ctx context.Context) error

	// Status returns the kernel's INFO status string, e.g. "1 core".
	Status() string
	// Table returns the kernel's TABLE string, e.g. "core 1 1024 ".
	Table() string

	io.Closer
}

// Optional capabilities. A Log may also have these methods; callers find
// them by type assertion, so a wrapper around a log can forward them.
//
//	Local() bool     // true: the log is not shared with other nodes, so
//	                 // RemoteRecovering always returns false
//	Volatile() bool  // true: Flush makes nothing durable, so there is no
//	                 // point waiting for it before writing
//
// Core has both (true); Disk is Local but not Volatile.

// IsLocal reports whether l says it is not shared with other nodes
// (a Local() bool method returning true).
func IsLocal(l Log) bool {
	v, ok := l.(interface{ Local() bool })
	return ok && v.Local()
}

// IsVolatile reports whether l says its Flush makes nothing durable
// (a Volatile() bool method returning true).
func IsVolatile(l Log) bool {
	v, ok := l.(interface{ Volatile() bool })
	return ok && v.Volatile()
}

type nonBlockingKey struct{}

// NonBlocking returns a context that asks InSync (and other queries) not
// to wait: a log that cannot answer from memory returns ErrWouldBlock.
// Build it once and reuse it on hot paths; it allocates.
func NonBlocking(ctx context.Context) context.Context {
	return context.WithValue(ctx, nonBlockingKey{}, true)
}

// MayBlock reports whether ctx allows a query to wait (see NonBlocking).
func MayBlock(ctx context.Context) bool {
	v, _ := ctx.Value(nonBlockingKey{}).(bool)
	return !v
}
