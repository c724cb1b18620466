package mirror

import "math/bits"

// ticket is the place of one user of a byte range in the order of
// writes: every write, and every read repair, takes one before it touches
// the legs and drops it after. It is listed in the inflight list of each
// shard in mask, in the order tickets were taken; seq is its number in its
// home shard (the lowest in mask), which ReplaceLeg uses to wait for the
// writes that may still use an old leg. A ticket's fields and its list
// entries are guarded by the shard locks of mask.
type ticket struct {
	lo, hi int64
	seq    uint64
	mask   uint64
}

// takeTicketLocked lists t for [lo, hi) at the end of the inflight list
// of each of its shards. The shards of [lo, hi) (or m.mu) must be held.
func (m *Mirror) takeTicketLocked(t *ticket, lo, hi int64) {
	mask := shardMask(m.regionOf(lo), m.regionOf(hi-1))
	h := m.home(mask)
	h.seq++
	*t = ticket{lo: lo, hi: hi, seq: h.seq, mask: mask}
	for x := mask; x != 0; x &= x - 1 {
		sh := &m.shards[bits.TrailingZeros64(x)]
		sh.inflight = append(sh.inflight, t)
	}
}

// dropTicketLocked takes t off its shards' inflight lists.
func (m *Mirror) dropTicketLocked(t *ticket) {
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
	for x := t.mask; x != 0; x &= x - 1 {
		for _, o := range m.shards[bits.TrailingZeros64(x)].inflight {
			if o == t {
				break
			}
			if o.lo < t.hi && t.lo < o.hi {
				return true
			}
		}
	}
	return false
}
