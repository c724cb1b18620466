package mirror

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bits-and-blooms/bitset"
)

// Leg is one copy of the mirrored data. Sync (Sync() error) and discard
// (Discard(off, n int64) error) are optional: the mirror finds them by type
// assertion. A leg without Sync is assumed to make writes durable when
// WriteAt returns. A leg's Discard must leave the range reading as zeroes
// (as a punched hole does), like the zeroes written to legs without it, so
// that the legs stay identical. A leg must allow parallel ReadAt and WriteAt calls on
// disjoint ranges (the io.WriterAt contract); the mirror never writes
// overlapping ranges of one leg at the same time.
type Leg interface {
	io.ReaderAt
	io.WriterAt
}

type syncer interface{ Sync() error }

type discarder interface{ Discard(off, n int64) error }

// Kinds of leg error, as the kernel's enum dm_raid1_error.
const (
	errWrite = 1 << iota
	errFlush
	errSync
	errRead
)

// legState is one leg and its health. The dev and name never change after
// the leg is installed (ReplaceLeg installs a new legState).
type legState struct {
	dev  Leg
	name string
	off  int64

	// Health, atomic: read by every I/O without a lock, changed by the
	// failures found on any path.
	errTypes   atomic.Uint32 // errWrite|errFlush|errSync|errRead
	errCount   atomic.Int64
	joining    atomic.Bool  // added by AddLeg/ReplaceLeg; serves no reads yet
	readsInFly atomic.Int64 // for LeastPending; atomic: bumped by every read
	// writeNanos is a running average of the leg's write time, sampled
	// by writers (atomic: a heuristic, updated without a lock; a lost
	// update only delays the average). See inlineLegNanos.
	writeNanos atomic.Int64

	// Join progress (guarded by Mirror.mu): regions not yet copied to a
	// joining leg.
	joinLeft      *bitset.BitSet
	joinRemaining int64
}

func (l *legState) failed() bool { return l.errTypes.Load() != 0 }

// noteWriteTime adds a sampled write time to the leg's running average
// (weight 1/8).
func (l *legState) noteWriteTime(d time.Duration) {
	old := l.writeNanos.Load()
	l.writeNanos.Store(old + (int64(d)-old)/8)
}

// readable reports whether the leg may serve reads of in-sync regions.
func (l *legState) readable() bool { return !l.failed() && !l.joining.Load() }

// statusChar is the kernel's device status character: A alive, else by
// priority F (flush) > D (write) > S (sync) > R (read).
func (l *legState) statusChar() byte {
	t := l.errTypes.Load()
	switch {
	case t == 0:
		return 'A'
	case t&errFlush != 0:
		return 'F'
	case t&errWrite != 0:
		return 'D'
	case t&errSync != 0:
		return 'S'
	case t&errRead != 0:
		return 'R'
	}
	return 'U'
}

func (l *legState) sync() error {
	if s, ok := l.dev.(syncer); ok {
		return s.Sync()
	}
	return nil
}

// LegsSyncer connects a log built before its mirror to the mirror's legs:
// pass its Sync method as the log's flush callback and the LegsSyncer in
// Options.Syncer, and the log's clears will wait for every leg to be
// synced. Parse and OpenDisk do this for you.
//
//	s := new(mirror.LegsSyncer)
//	log, _ := dirtylog.OpenDisk(logDev, dirtylog.Options{..., FlushCallback: s.Sync})
//	m, _ := mirror.New(legs, log, mirror.Options{Syncer: s})
//
// A LegsSyncer is safe for concurrent use. Until it is bound its Sync
// fails, so no clear can reach the log before the legs are known.
type LegsSyncer struct {
	mu sync.Mutex
	m  *Mirror
}

// errUnbound is returned by an unbound LegsSyncer.
var errUnbound = errors.New("mirror: LegsSyncer not bound to a mirror")

// Sync syncs every leg of the bound mirror (the kernel's mirror_flush).
// A leg whose sync fails is failed with a flush error (status F).
func (s *LegsSyncer) Sync() error {
	s.mu.Lock()
	m := s.m
	s.mu.Unlock()
	if m == nil {
		return errUnbound
	}
	return m.syncLegs(true)
}

func (s *LegsSyncer) bind(m *Mirror) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m != nil && s.m != m {
		return fmt.Errorf("%w: LegsSyncer already bound to another mirror", ErrBadTable)
	}
	s.m = m
	return nil
}
