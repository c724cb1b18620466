package dirtylog

import (
	"fmt"
	"math"
)

// SectorSize is the unit, in bytes, of region sizes in table arguments
// and status strings (the kernel's sectors). Options and Env sizes are in
// bytes.
const SectorSize = 512

// SyncMode says how a log treats the state it starts with. It is a plain
// value, safe for concurrent use.
type SyncMode int

const (
	// DefaultSync trusts what a persistent log holds; a core log starts
	// with every region out of sync.
	DefaultSync SyncMode = iota
	// ForceSync ("sync") starts with every region out of sync: a full resync.
	ForceSync
	// NoSync ("nosync") starts with every region in sync: no resync.
	NoSync
)

// String returns the table word for the mode ("", "sync" or "nosync").
func (m SyncMode) String() string {
	switch m {
	case ForceSync:
		return "sync"
	case NoSync:
		return "nosync"
	}
	return ""
}

// Options configures a core or disk log. It is a plain value: NewCore and
// OpenDisk copy it, so it may be reused or changed afterwards.
//
// Every size in Options is in bytes. The table words that New parses
// ("disk 253:2 1024") give the region size in 512-byte sectors, as the
// kernel's do, and Status and Table print sectors; Options never does.
type Options struct {
	// RegionSize is the region size in bytes: a power of two, at least
	// 1024 bytes (two sectors) and at most DeviceSize bytes.
	RegionSize int64
	// DeviceSize is the size in bytes of the device the log describes
	// (required: it has no default). The region count,
	// ceil(DeviceSize/RegionSize), may reach the kernel's limit of
	// 2^32-1; a core log holds three bits per region in memory, so a
	// program that builds logs from untrusted input caps the count itself.
	DeviceSize int64
	// Sync is the start-up mode.
	Sync SyncMode
	// FlushCallback, if set, is called by a disk log's Flush before it
	// writes clears, so that data is durable before its region is clean
	// (a mirror passes "sync every leg"). If it fails, every region is
	// treated as dirty from then on and clears are ignored.
	FlushCallback func() error
	// OnEvent, if set, receives events such as the first log failure. It
	// is called synchronously and must not call back into the log.
	OnEvent func(Event)
	// Name names the log device in Status and Table (the kernel prints
	// major:minor). Defaults to "log".
	Name string
	// LogicalBlockSize is the log device's logical block size in bytes:
	// the disk log pads its I/O to it and writes whole blocks. A power of
	// two from 512 to 65536 bytes; 0 means 512 bytes.
	LogicalBlockSize int
	// Format lets OpenDisk write a new log over a device whose bytes are
	// neither a dm disk log nor all zeroes, over a log of a version it
	// cannot read, or over a device it could not read: the kernel's rule,
	// which starts a new log in each case. Without it OpenDisk refuses
	// (ErrNotLog, ErrBadVersion, ErrLogFailed) and writes nothing. A
	// device that holds a valid log is read as usual either way.
	Format bool
	// Resize lets OpenDisk take a log whose header counts another number
	// of regions than DeviceSize and RegionSize give, with the kernel's
	// rules: regions past the old count start dirty (clean under NoSync),
	// regions past the new count are dropped. Without it such a log is
	// refused (ErrGeometry): the v2 header does not record the region
	// size, so a wrong RegionSize would look like a resize and put every
	// dirty bit on the wrong region.
	Resize bool
}

// EventKind tells what an Event reports. It is a plain value, safe for
// concurrent use.
type EventKind int

const (
	// EventLogFailed: the log device failed for the first time (status
	// D or F). Reported once per log.
	EventLogFailed EventKind = iota + 1
	// EventFlushCallbackFailed: the flush callback failed; every region is
	// dirty from now on. Reported once per log.
	EventFlushCallbackFailed
)

// String names the kind.
func (k EventKind) String() string {
	switch k {
	case EventLogFailed:
		return "log-failed"
	case EventFlushCallbackFailed:
		return "flush-callback-failed"
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// Event is something a log reports through Options.OnEvent. It is a plain
// value, safe to copy and to share.
type Event struct {
	Kind EventKind // what happened
	Err  error     // the error behind it, if any
}

// String returns the kind and the error, as "log-failed: <err>".
func (e Event) String() string { return fmt.Sprintf("%s: %v", e.Kind, e.Err) }

// regionCount validates the geometry and returns ceil(DeviceSize/RegionSize).
func (o *Options) regionCount() (uint64, error) {
	rs, ds := o.RegionSize, o.DeviceSize
	switch {
	case ds == 0:
		return 0, fmt.Errorf("%w: Options.DeviceSize is missing (0 bytes): set it to the size in bytes of the device the log describes",
			ErrBadOptions)
	case ds < 0:
		return 0, fmt.Errorf("%w: Options.DeviceSize is %d bytes: want the positive size in bytes of the device the log describes",
			ErrBadOptions, ds)
	}
	if rs < 2*SectorSize || rs&(rs-1) != 0 || rs > ds {
		return 0, fmt.Errorf("%w: Options.RegionSize is %d bytes: want a power of two of at least %d bytes and at most Options.DeviceSize (%d bytes)",
			ErrBadRegionSize, rs, 2*SectorSize, ds)
	}
	n := uint64((ds + rs - 1) / rs)
	if n > math.MaxUint32 {
		return 0, fmt.Errorf("%w: Options.DeviceSize %d bytes in regions of Options.RegionSize %d bytes is %d regions, more than the kernel's limit of %d",
			ErrBadRegionSize, ds, rs, n, uint64(math.MaxUint32))
	}
	return n, nil
}

func (o *Options) name() string {
	if o.Name == "" {
		return "log"
	}
	return o.Name
}

func (o *Options) blockSize() (int, error) {
	bs := o.LogicalBlockSize
	if bs == 0 {
		return SectorSize, nil
	}
	if bs < SectorSize || bs&(bs-1) != 0 || bs > 1<<16 {
		return 0, fmt.Errorf("%w: Options.LogicalBlockSize is %d bytes: want a power of two from %d to %d bytes (0 for %d)",
			ErrBadOptions, bs, SectorSize, 1<<16, SectorSize)
	}
	return bs, nil
}
