package dirtylog

import (
	"context"
	"math/bits"
	"sync"
	"sync/atomic"
)

// regions is the in-memory state shared by the core and disk logs: the
// clean, sync and recovering bitmaps, the sync count and the resync
// cursor. It does no I/O. Core and Disk embed it, so the Log methods that
// only read or change this state (RegionSize, RegionCount, IsClean,
// InSync, MarkRegion, ClearRegion, ResyncWork, SetRegionSync, SyncCount,
// Local, RemoteRecovering) are written once, here, and promoted.
//
// Clean bits are atomic words so that MarkRegion and ClearRegion take no
// lock; sync bits are atomic words too (InSync is a lock-free load) but are
// only changed under mu, together with the recovering bits, the count and
// the cursor.
type regions struct {
	regionSize int64
	count      uint64

	clean       []atomic.Uint64 // 1 = no write in flight since last clear
	flushFailed atomic.Bool     // sticky: clears are ignored

	// changed, if non-nil, gets bit b set whenever a clean bit in word w
	// with w>>changedShift == b changes: the disk log's hint of which
	// blocks to compare at flush.
	changed      []atomic.Uint64
	changedShift uint

	mu         sync.Mutex
	sync       []atomic.Uint64 // 1 = in sync; written under mu
	recovering []uint64        // 1 = handed out by resyncWork
	syncCount  uint64
	cursor     uint64
}

func wordsFor(n uint64) int { return int((n + 63) / 64) }

// tailMask returns the mask of valid bits in the last word.
func (s *regions) tailMask() uint64 {
	if r := s.count % 64; r != 0 {
		return 1<<r - 1
	}
	return ^uint64(0)
}

// init sizes the bitmaps: every region clean; in sync iff inSync.
func (s *regions) init(regionSize int64, count uint64, inSync bool) {
	s.regionSize = regionSize
	s.count = count
	n := wordsFor(count)
	s.clean = make([]atomic.Uint64, n)
	s.sync = make([]atomic.Uint64, n)
	s.recovering = make([]uint64, n)
	for i := range s.clean {
		s.clean[i].Store(^uint64(0))
	}
	if n > 0 {
		s.clean[n-1].Store(s.tailMask())
	}
	s.setAllSync(inSync)
}

// setAllSync sets every sync bit to v and recomputes the count.
func (s *regions) setAllSync(v bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.sync {
		w := uint64(0)
		if v {
			w = ^uint64(0)
			if i == len(s.sync)-1 {
				w = s.tailMask()
			}
		}
		s.sync[i].Store(w)
	}
	s.syncCount = 0
	if v {
		s.syncCount = s.count
	}
	s.cursor = 0
}

// syncFromClean copies the clean bits to the sync bits (disk resume).
func (s *regions) syncFromClean() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.syncCount = 0
	for i := range s.sync {
		w := s.clean[i].Load()
		s.sync[i].Store(w)
		s.syncCount += uint64(bits.OnesCount64(w))
	}
	s.cursor = 0
}

func (s *regions) noteChanged(w uint64) {
	if s.changed == nil {
		return
	}
	b := w >> s.changedShift
	m := uint64(1) << (b % 64)
	c := &s.changed[b/64]
	if c.Load()&m == 0 {
		c.Or(m)
	}
}

// RegionSize returns the region size in bytes.
func (s *regions) RegionSize() int64 { return s.regionSize }

// RegionCount returns the number of regions.
func (s *regions) RegionCount() uint64 { return s.count }

// IsClean reports whether r has no write in flight since its last clear.
// It never blocks.
func (s *regions) IsClean(_ context.Context, r Region) (bool, error) {
	if err := s.check(r); err != nil {
		return false, err
	}
	return s.isClean(r), nil
}

// InSync reports whether r is in sync. It never blocks.
func (s *regions) InSync(_ context.Context, r Region) (bool, error) {
	if err := s.check(r); err != nil {
		return false, err
	}
	return s.inSync(r), nil
}

// Local is true: the log is not shared with other nodes (see IsLocal).
func (s *regions) Local() bool { return true }

// RemoteRecovering is always false for a local log.
func (s *regions) RemoteRecovering(context.Context, Region) (bool, error) { return false, nil }

// MarkRegion marks r dirty in memory; a persistent log's Flush makes the
// mark durable. It is lock-free.
func (s *regions) MarkRegion(r Region) {
	if uint64(r) >= s.count {
		return
	}
	w, m := uint64(r)/64, uint64(1)<<(uint64(r)%64)
	c := &s.clean[w]
	if c.Load()&m == 0 {
		return // already dirty: nothing changes
	}
	c.And(^m)
	s.noteChanged(w)
}

// ClearRegion marks r clean in memory; a persistent log writes the clear
// at a later Flush. After a flush callback failure it does nothing. It is
// lock-free.
func (s *regions) ClearRegion(r Region) {
	if uint64(r) >= s.count || s.flushFailed.Load() {
		return
	}
	w, m := uint64(r)/64, uint64(1)<<(uint64(r)%64)
	c := &s.clean[w]
	if c.Load()&m != 0 {
		return
	}
	c.Or(m)
	s.noteChanged(w)
}

// dirtyAll clears every clean bit (after a flush callback failure).
func (s *regions) dirtyAll() {
	for i := range s.clean {
		if s.clean[i].Swap(0) != 0 {
			s.noteChanged(uint64(i))
		}
	}
}

func (s *regions) isClean(r Region) bool {
	return s.clean[r/64].Load()&(1<<(r%64)) != 0
}

func (s *regions) inSync(r Region) bool {
	return s.sync[r/64].Load()&(1<<(r%64)) != 0
}

func (s *regions) check(r Region) error {
	if uint64(r) >= s.count {
		return ErrRegionRange
	}
	return nil
}

// ResyncWork hands out the next region at or after the resync cursor that
// is out of sync and not recovering, and flags it recovering. It never
// fails.
func (s *regions) ResyncWork(context.Context) (Region, bool, error) {
	r, ok := s.resyncWork()
	return r, ok, nil
}

func (s *regions) resyncWork() (Region, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.cursor < s.count {
		w := s.cursor / 64
		cand := ^s.sync[w].Load() &^ s.recovering[w]
		cand &= ^uint64(0) << (s.cursor % 64)
		if int(w) == len(s.sync)-1 {
			cand &= s.tailMask()
		}
		if cand == 0 {
			s.cursor = (w + 1) * 64
			continue
		}
		r := w*64 + uint64(bits.TrailingZeros64(cand))
		s.cursor = r + 1
		s.recovering[w] |= 1 << (r % 64)
		return Region(r), true
	}
	return 0, false
}

// SetRegionSync ends r's recovery and sets its sync bit. A region counted
// in sync is not counted again; a region that goes out of sync behind the
// cursor pulls the cursor back so ResyncWork finds it (both improvements
// over the kernel).
func (s *regions) SetRegionSync(r Region, inSync bool) {
	if uint64(r) >= s.count {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	w, m := uint64(r)/64, uint64(1)<<(uint64(r)%64)
	s.recovering[w] &^= m
	old := s.sync[w].Load()
	switch {
	case inSync && old&m == 0:
		s.sync[w].Store(old | m)
		s.syncCount++
	case !inSync && old&m != 0:
		s.sync[w].Store(old &^ m)
		s.syncCount--
	}
	if !inSync && uint64(r) < s.cursor {
		s.cursor = uint64(r)
	}
}

// SyncCount returns the number of regions in sync.
func (s *regions) SyncCount() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.syncCount
}

func (s *regions) resetCursor() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cursor = 0
}
