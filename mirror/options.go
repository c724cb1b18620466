package mirror

import (
	"fmt"
	"time"
)

// ReadPolicy chooses which in-sync leg serves a read of an in-sync
// region. Out-of-sync regions are always read from the default leg. It is
// a plain value, safe for concurrent use.
type ReadPolicy int

const (
	// RoundRobin spreads reads over the healthy in-sync legs in turn.
	RoundRobin ReadPolicy = iota
	// LeastPending sends a read to the healthy leg with the fewest reads
	// in flight (md raid1's choice for devices without seek cost).
	LeastPending
	// DefaultLeg reads from the default leg, as the kernel's dm-raid1
	// does; if it has failed, from the nearest healthy leg before it.
	DefaultLeg
)

// String names the policy.
func (p ReadPolicy) String() string {
	switch p {
	case RoundRobin:
		return "round-robin"
	case LeastPending:
		return "least-pending"
	case DefaultLeg:
		return "default-leg"
	}
	return fmt.Sprintf("ReadPolicy(%d)", int(p))
}

// Options configures a Mirror; New copies it, so changing it later has no
// effect (it is a plain value; its callbacks are called from the mirror's
// goroutines and must be safe for concurrent use). The zero value (plus
// Size) is a working configuration: round-robin reads, kernel error
// handling without handle_errors, four parallel resync copies and no rate
// limit.
type Options struct {
	// Size of the mirrored device in bytes (the kernel's ti->len). Zero
	// means RegionCount*RegionSize of the log, or the shortest leg whose
	// size can be learned if that is less (still in the last region): it
	// never exceeds a leg. The last region may be partial: Size need not
	// be a multiple of the region size.
	Size int64
	// Names of the legs in Status and Table (the kernel prints major:minor).
	// Missing names default to "leg0", "leg1", …
	Names []string
	// Offsets of the legs in bytes, printed in Table in sectors. They are
	// informational: a Leg is addressed from 0 (wrap it with
	// io.NewOffsetWriter / io.NewSectionReader or use Parse).
	Offsets []int64

	// HandleErrors is the kernel's handle_errors feature: a write that
	// failed on some leg is held (not acknowledged) until the failed leg
	// is replaced with ReplaceLeg or the mirror is closed. (Events and the
	// default leg's handover happen with or without it; the kernel ties
	// them to handle_errors.)
	HandleErrors bool
	// KeepLog is the kernel's keep_log feature (requires HandleErrors):
	// writes that would be held complete instead, and writes after a log
	// failure fail at once.
	KeepLog bool

	// ReadPolicy chooses the leg for reads of in-sync regions.
	ReadPolicy ReadPolicy
	// ReadRepair, when a read fails on one leg and succeeds on another,
	// rewrites the failed range of the bad leg from the good data instead of
	// failing the leg; the leg fails only if that rewrite fails.
	ReadRepair bool

	// ResyncParallel is the number of regions copied at once (default 4).
	// A log that allows one recovery at a time (the clustered logs of
	// dirtylog/remote and dirtylog/etcdlog) copies one region at a time,
	// whatever this says.
	ResyncParallel int
	// ResyncRate limits resync to this many bytes per second (0: no limit).
	ResyncRate int64
	// ResyncChunk is the largest single copy I/O (default 1 MiB; a region
	// larger than this is copied in several pieces).
	ResyncChunk int
	// NoResync disables the background resync worker; call Resync to run
	// one pass synchronously.
	NoResync bool
	// ResyncRetry is the first delay before resync is tried again after a
	// region's copy failed; it doubles up to a minute (default 1 s). The
	// worker never retries a failed region in a busy loop.
	ResyncRetry time.Duration

	// ClearDelay is how long a region stays dirty in the log after its last
	// write completes before the clear is written. Hot regions then stay
	// marked and later writes to them skip the log flush (md's
	// daemon_sleep). Zero means 100 ms; a negative value clears as soon as
	// the region is idle, as the kernel does. A clear pass syncs the legs
	// (the disk log syncs them before it writes a clean bit), so while the
	// mirror is being written it is put off to a quiet moment, for at most
	// 8 passes (Stats.ClearDefers counts them): under a steady stream of
	// writes an idle region is cleared within about 10 clear delays.
	ClearDelay time.Duration

	// OnEvent receives events: leg failed, log failed, resync complete,
	// leg joined. It is called synchronously from the goroutine that found
	// the event and must not block or call back into the mirror.
	OnEvent func(Event)
	// OnProgress receives resync progress after every region copied and
	// when the resync completes. Same rules as OnEvent.
	OnProgress func(Progress)

	// Syncer, if set, is bound to the new mirror so that the log's flush
	// callback (built before the mirror existed) syncs its legs. See
	// LegsSyncer.
	Syncer *LegsSyncer
}

func (o *Options) resyncParallel() int {
	if o.ResyncParallel <= 0 {
		return 4
	}
	return o.ResyncParallel
}

func (o *Options) resyncChunk() int {
	if o.ResyncChunk <= 0 {
		return 1 << 20
	}
	return o.ResyncChunk
}

func (o *Options) resyncRetry() time.Duration {
	if o.ResyncRetry <= 0 {
		return time.Second
	}
	return o.ResyncRetry
}

func (o *Options) clearDelay() time.Duration {
	switch {
	case o.ClearDelay == 0:
		return 100 * time.Millisecond
	case o.ClearDelay < 0:
		return 0
	}
	return o.ClearDelay
}

// EventKind tells what an Event reports. It is a plain value, safe for
// concurrent use.
type EventKind int

const (
	// EventLegFailed: a leg failed (read, write, sync or flush error) for
	// the first time with that kind of error. (The kernel raises its dm
	// event only with handle_errors; the mirror always reports it.)
	EventLegFailed EventKind = iota + 1
	// EventLogFailed: a log flush failed for the first time.
	EventLogFailed
	// EventInSync: every region is in sync (after a resync); leg error
	// states were reset, as the kernel does.
	EventInSync
	// EventLegJoined: a leg added with AddLeg or ReplaceLeg has every
	// region and now serves reads.
	EventLegJoined
	// EventDefaultChanged: the default leg moved after a failure.
	EventDefaultChanged
)

// String names the kind.
func (k EventKind) String() string {
	switch k {
	case EventLegFailed:
		return "leg-failed"
	case EventLogFailed:
		return "log-failed"
	case EventInSync:
		return "in-sync"
	case EventLegJoined:
		return "leg-joined"
	case EventDefaultChanged:
		return "default-changed"
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// Event is something the mirror reports through Options.OnEvent. It is a
// plain value, safe to copy and share.
type Event struct {
	Kind EventKind // what happened
	// Leg is the leg concerned (EventLegFailed, EventLegJoined,
	// EventDefaultChanged: the new default), or -1.
	Leg int
	// Err is the error that caused the event, if any.
	Err error
}

// String describes the event.
func (e Event) String() string {
	if e.Err != nil {
		return fmt.Sprintf("%s leg=%d: %v", e.Kind, e.Leg, e.Err)
	}
	return fmt.Sprintf("%s leg=%d", e.Kind, e.Leg)
}

// Progress reports resync progress. It is a plain value, safe to copy and
// share.
type Progress struct {
	// InSync and Total count regions (the log's SyncCount and RegionCount).
	InSync, Total uint64
	// Copied is the number of bytes copied by resync since the mirror
	// started; BytesPerSec is the recent copy rate.
	Copied      int64
	BytesPerSec float64
	// ETA estimates the time to full sync at the current rate (0 when in
	// sync or unknown).
	ETA time.Duration
	// Done is true when every region is in sync.
	Done bool
}
