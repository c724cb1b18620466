package logwrites

import (
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
)

// This file holds the pure part of crash-state generation: which subsets
// and orders of the not-yet-durable writes to try at one cut, and how to
// tear a write. It does no I/O and knows nothing of overlays.

// candidate is a write (or discard) that was not durable at a cut.
type candidate struct {
	index   uint64 // entry index
	sectors uint64 // length in 512-byte sectors
}

// plan is one way the candidates of a cut may have reached the device:
// candidates order[0], order[1], ... applied in that order, the last one
// torn to the sectors in tear if tear is not nil.
type plan struct {
	order []int
	tear  []SectorRange
}

func (p plan) key() string {
	var b strings.Builder
	for _, i := range p.order {
		b.WriteString(strconv.Itoa(i))
		b.WriteByte(',')
	}
	if p.tear != nil {
		b.WriteByte('t')
		for _, r := range p.tear {
			b.WriteString(strconv.FormatUint(r.Start, 10))
			b.WriteByte('-')
			b.WriteString(strconv.FormatUint(r.End, 10))
			b.WriteByte(',')
		}
	}
	return b.String()
}

// cutRNG returns the random source for the cut at entry cut: it depends on
// the seed and the cut only, so a cut's plans are the same whatever else is
// explored or how many states are checked before it.
func cutRNG(seed, cut uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, cut^0x6c6f677772697465))
}

// subsetPlans chooses up to max distinct plans for the candidates of one
// cut. It tries, in turn, one of each kind until max is reached or all
// kinds are exhausted:
//
//   - nothing of the epoch (only the durable state);
//   - the first j candidates in log order (a crash part way, in order);
//   - all but candidate i, in log order (one write lost, as ALICE's
//     "omit one operation");
//   - candidate i alone;
//   - all candidates in reverse order;
//   - a random subset in a random order.
//
// With tear set, every plan whose last write spans two or more sectors is
// followed by a copy in which that write is torn: a random non-empty,
// proper subset of its sectors (half the time a prefix of them) is kept.
// The result depends only on the arguments and rng's state.
func subsetPlans(cands []candidate, max int, tear bool, rng *rand.Rand) []plan {
	k := len(cands)
	if k == 0 || max <= 0 {
		return nil
	}
	var out []plan
	seen := map[string]bool{}
	add := func(p plan) bool {
		if len(out) >= max {
			return false
		}
		if key := p.key(); !seen[key] {
			seen[key] = true
			out = append(out, p)
		}
		if tear && len(p.order) > 0 && len(out) < max {
			last := cands[p.order[len(p.order)-1]]
			if last.sectors >= 2 {
				t := plan{order: p.order, tear: tearSectors(last.sectors, rng)}
				if key := t.key(); !seen[key] {
					seen[key] = true
					out = append(out, t)
				}
			}
		}
		return len(out) < max
	}
	seq := func(lo, hi int) []int {
		s := make([]int, 0, hi-lo)
		for i := lo; i < hi; i++ {
			s = append(s, i)
		}
		return s
	}
	if !add(plan{order: []int{}}) {
		return out
	}
	// Systematic kinds, taken round robin.
	gens := []func(step int) (plan, bool){
		func(step int) (plan, bool) { // in-order prefixes, longest first
			j := k - step
			if j < 1 {
				return plan{}, false
			}
			return plan{order: seq(0, j)}, true
		},
		func(step int) (plan, bool) { // omit one
			if k < 2 || step >= k {
				return plan{}, false
			}
			return plan{order: slices.Concat(seq(0, step), seq(step+1, k))}, true
		},
		func(step int) (plan, bool) { // singletons
			if k < 2 || step >= k {
				return plan{}, false
			}
			return plan{order: []int{step}}, true
		},
		func(step int) (plan, bool) { // reverse
			if k < 2 || step > 0 {
				return plan{}, false
			}
			r := seq(0, k)
			slices.Reverse(r)
			return plan{order: r}, true
		},
	}
	for step := 0; ; step++ {
		more := false
		for _, g := range gens {
			p, ok := g(step)
			if !ok {
				continue
			}
			more = true
			if !add(p) {
				return out
			}
		}
		if !more {
			break
		}
	}
	// Random subsets in random orders, until max or until new ones stop
	// coming (small epochs have few distinct plans).
	for misses := 0; misses < 8*max && len(out) < max; {
		var order []int
		for i := range k {
			if rng.IntN(2) == 1 {
				order = append(order, i)
			}
		}
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		n := len(out)
		if order == nil {
			order = []int{}
		}
		if !add(plan{order: order}) {
			break
		}
		if len(out) == n {
			misses++
		}
	}
	return out
}

// tearSectors chooses which sectors of an n-sector write (n >= 2) were
// written: half the time a prefix (the usual torn write), otherwise a random
// subset; never none and never all.
func tearSectors(n uint64, rng *rand.Rand) []SectorRange {
	if rng.IntN(2) == 0 || n > 4096 {
		return []SectorRange{{0, 1 + rng.Uint64N(n-1)}}
	}
	keep := make([]bool, n)
	for {
		cnt := uint64(0)
		for i := range keep {
			keep[i] = rng.IntN(2) == 1
			if keep[i] {
				cnt++
			}
		}
		if cnt > 0 && cnt < n {
			break
		}
	}
	var rs []SectorRange
	for i := uint64(0); i < n; i++ {
		if !keep[i] {
			continue
		}
		if len(rs) > 0 && rs[len(rs)-1].End == i {
			rs[len(rs)-1].End++
		} else {
			rs = append(rs, SectorRange{i, i + 1})
		}
	}
	return rs
}
