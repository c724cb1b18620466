package remote

import (
	"math/bits"
	"sync/atomic"

	"github.com/dmlog/dmlog/dirtylog"
)

// pendingSet is a set of regions waiting for the next Flush: a bitmap of
// regions plus a summary with one bit per bitmap word that may be
// nonzero, so that taking the set costs in proportion to what is pending,
// not to the size of the device. add, remove and has are lock-free and do
// not allocate; take may run concurrently with them (a region added
// meanwhile is taken now or by the next take).
type pendingSet struct {
	words   []atomic.Uint64
	summary []atomic.Uint64
}

func newPendingSet(regions uint64) pendingSet {
	n := (regions + 63) / 64
	return pendingSet{words: make([]atomic.Uint64, n), summary: make([]atomic.Uint64, (n+63)/64)}
}

func (s *pendingSet) has(r dirtylog.Region) bool {
	return s.words[r/64].Load()&(1<<(r%64)) != 0
}

// add puts r in the set: the region's bit first, then its word's summary
// bit, so a take that finds the summary bit clear leaves the region for
// the next take, which finds it.
func (s *pendingSet) add(r dirtylog.Region) {
	w, m := r/64, uint64(1)<<(r%64)
	if s.words[w].Load()&m == 0 {
		s.words[w].Or(m)
	}
	sw, sm := w/64, uint64(1)<<(w%64)
	if s.summary[sw].Load()&sm == 0 {
		s.summary[sw].Or(sm)
	}
}

// remove takes r out of the set (its summary bit may stay set: a take
// then finds an empty word).
func (s *pendingSet) remove(r dirtylog.Region) {
	w, m := r/64, uint64(1)<<(r%64)
	if s.words[w].Load()&m != 0 {
		s.words[w].And(^m)
	}
}

// take empties the set into regs, in ascending order.
func (s *pendingSet) take(regs []dirtylog.Region) []dirtylog.Region {
	for sw := range s.summary {
		if s.summary[sw].Load() == 0 {
			continue
		}
		for sv := s.summary[sw].Swap(0); sv != 0; sv &= sv - 1 {
			w := uint64(sw)*64 + uint64(bits.TrailingZeros64(sv))
			for v := s.words[w].Swap(0); v != 0; v &= v - 1 {
				regs = append(regs, dirtylog.Region(w*64+uint64(bits.TrailingZeros64(v))))
			}
		}
	}
	return regs
}
