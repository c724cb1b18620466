package mirror

import (
	"math/bits"
	"sync/atomic"
)

// ticket is the place of one user of a byte range in the order of
// writes: every write, and every read repair, takes one before it touches
// the legs and drops it after. It is listed in the inflight list of each
// shard in mask, in the order tickets were taken; seq is its number in its
// home shard (the lowest in mask), which ReplaceLeg uses to wait for the
// writes that may still use an old leg. A ticket's fields and its list
// entries are guarded by the shard locks of mask; done is an atomic
// because two waiters may find the ticket under two different shards of
// its mask (each holds one, and the dropper holds all of them).
type ticket struct {
	lo, hi int64
	seq    uint64
	mask   uint64
	done   atomic.Pointer[chan struct{}] // made by a first waiter, closed when dropped
}

// takeTicketLocked lists t for [lo, hi) at the end of the inflight list
// of each of its shards. The shards of [lo, hi) (or m.mu) must be held.
func (m *Mirror) takeTicketLocked(t *ticket, lo, hi int64) {
	mask := shardMask(m.regionOf(lo), m.regionOf(hi-1))
	h := m.home(mask)
	h.seq++
	t.lo, t.hi, t.seq, t.mask = lo, hi, h.seq, mask
	for x := mask; x != 0; x &= x - 1 {
		sh := &m.shards[bits.TrailingZeros64(x)]
		sh.inflight = append(sh.inflight, t)
	}
}

// dropTicketLocked takes t off its shards' inflight lists and wakes the
// writes waiting for it. Every shard of t.mask (or m.mu) must be held.
func (m *Mirror) dropTicketLocked(t *ticket) {
	// A plain load (no locked swap on every write): a waiter sets done
	// only under one of t's shards, all of which are held here.
	if ch := t.done.Load(); ch != nil {
		t.done.Store(nil)
		close(*ch)
	}
	for x := t.mask; x != 0; x &= x - 1 {
		sh := &m.shards[bits.TrailingZeros64(x)]
		for i, o := range sh.inflight {
			if o == t {
				copy(sh.inflight[i:], sh.inflight[i+1:])
				sh.inflight[len(sh.inflight)-1] = nil
				sh.inflight = sh.inflight[:len(sh.inflight)-1]
				break
			}
		}
	}
}

// overlapsEarlierLocked reports whether a ticket taken before t overlaps
// it. Two overlapping tickets share a region, so a shard, and were listed
// there in the order they were taken (each with all its shards locked),
// which is the order their writes reach the legs.
func (m *Mirror) overlapsEarlierLocked(t *ticket) bool {
	return m.earlierOverlapLocked(t) != nil
}

// earlierOverlapLocked returns a ticket taken before t that overlaps it,
// or nil. t's shards (or m.mu) must be held.
func (m *Mirror) earlierOverlapLocked(t *ticket) *ticket {
	for x := t.mask; x != 0; x &= x - 1 {
		for _, o := range m.shards[bits.TrailingZeros64(x)].inflight {
			if o == t {
				break
			}
			if o.lo < t.hi && t.lo < o.hi {
				return o
			}
		}
	}
	return nil
}

// waitDropLocked waits, with t's shards dropped and then retaken, until
// the earlier ticket o is dropped. It lets a write wait for the order of
// overlapping writes without m.mu. t's shards must be held, and o must
// have been found under them.
func (m *Mirror) waitDropLocked(t, o *ticket) {
	ch := o.done.Load()
	if ch == nil {
		c := make(chan struct{})
		if !o.done.CompareAndSwap(nil, &c) {
			ch = o.done.Load()
		} else {
			ch = &c
		}
	}
	m.unlockShards(t.mask)
	<-*ch
	m.lockShards(t.mask)
}
