package dirtylog

import (
	"fmt"
	"math"
)

// SectorSize is the unit of region sizes in table arguments and status
// strings.
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
type Options struct {
	// RegionSize in bytes: a power of two, at least 1024 (two sectors) and
	// at most DeviceSize.
	RegionSize int64
	// DeviceSize is the size in bytes of the device the log describes.
	// The region count, ceil(DeviceSize/RegionSize), may reach the
	// kernel's limit of 2^32-1; a core log holds three bits per region in
	// memory, so a program that builds logs from untrusted input caps the
	// count itself.
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
	// LogicalBlockSize of the log device: the disk log pads its I/O to it
	// and writes whole blocks. Defaults to 512.
	LogicalBlockSize int
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
	if ds <= 0 {
		return 0, fmt.Errorf("%w: device size %d", ErrBadRegionSize, ds)
	}
	if rs < 2*SectorSize || rs&(rs-1) != 0 || rs > ds {
		return 0, fmt.Errorf("%w: %d bytes (a power of two of at least %d and at most the device size %d)",
			ErrBadRegionSize, rs, 2*SectorSize, ds)
	}
	n := uint64((ds + rs - 1) / rs)
	if n > math.MaxUint32 {
		return 0, fmt.Errorf("%w: %d regions is more than the kernel's limit of %d", ErrBadRegionSize, n, uint64(math.MaxUint32))
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
		return 0, fmt.Errorf("%w: logical block size %d", ErrBadArgs, bs)
	}
	return bs, nil
}
