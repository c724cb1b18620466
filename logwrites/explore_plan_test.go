package logwrites

import (
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

func xcands(sectors ...uint64) []candidate {
	var cs []candidate
	for i, s := range sectors {
		cs = append(cs, candidate{index: uint64(10 + i), sectors: s})
	}
	return cs
}

func TestSubsetPlansBoundedDistinctDeterministic(t *testing.T) {
	cs := xcands(1, 4, 2, 8, 1, 3, 1, 1, 2, 5)
	for _, max := range []int{1, 2, 5, 17, 64, 300} {
		for _, tear := range []bool{false, true} {
			a := subsetPlans(cs, max, tear, cutRNG(1, 5))
			b := subsetPlans(cs, max, tear, cutRNG(1, 5))
			require.Equal(t, a, b, "deterministic for a seed and cut")
			require.LessOrEqual(t, len(a), max)
			require.Equal(t, max, len(a), "ten candidates have more plans than %d", max)
			seen := map[string]bool{}
			for _, p := range a {
				require.False(t, seen[p.key()], "duplicate plan %v", p)
				seen[p.key()] = true
				used := map[int]bool{}
				for _, i := range p.order {
					require.True(t, i >= 0 && i < len(cs))
					require.False(t, used[i], "a write is applied at most once")
					used[i] = true
				}
				if p.tear != nil {
					require.True(t, tear)
					require.NotEmpty(t, p.order)
					last := cs[p.order[len(p.order)-1]]
					var kept uint64
					for _, r := range p.tear {
						require.Less(t, r.Start, r.End)
						require.LessOrEqual(t, r.End, last.sectors)
						kept += r.End - r.Start
					}
					require.True(t, kept > 0 && kept < last.sectors, "torn means some but not all sectors")
				}
			}
			require.Empty(t, a[0].order, "the durable state alone comes first")
		}
	}
	require.NotEqual(t, subsetPlans(cs, 100, true, cutRNG(1, 5)), subsetPlans(cs, 100, true, cutRNG(2, 5)), "the seed matters")
	require.NotEqual(t, subsetPlans(cs, 100, true, cutRNG(1, 5)), subsetPlans(cs, 100, true, cutRNG(1, 6)), "so does the cut")
}

func TestSubsetPlansSystematicKinds(t *testing.T) {
	cs := xcands(1, 1, 1, 1)
	ps := subsetPlans(cs, 1000, false, cutRNG(0, 0))
	has := func(order ...int) bool {
		return slices.ContainsFunc(ps, func(p plan) bool { return slices.Equal(p.order, order) })
	}
	require.True(t, has())
	require.True(t, has(0, 1, 2, 3), "everything in order")
	require.True(t, has(0, 1), "an in-order prefix")
	require.True(t, has(0, 2, 3), "all but one")
	require.True(t, has(2), "one alone")
	require.True(t, has(3, 2, 1, 0), "reversed")
	// Four one-sector writes have sum_{j} 4!/(4-j)! = 65 ordered subsets;
	// with a large bound the random phase finds most of them and stops.
	require.LessOrEqual(t, len(ps), 65)
	require.Greater(t, len(ps), 40)

	// One candidate: nothing, it, and (with tear, if it spans sectors)
	// distinct tears of it.
	ps = subsetPlans(xcands(4), 10, true, cutRNG(0, 0))
	require.Greater(t, len(ps), 3)
	require.Empty(t, ps[0].order)
	require.Equal(t, []int{0}, ps[1].order)
	require.Nil(t, ps[1].tear)
	for _, p := range ps[2:] {
		require.Equal(t, []int{0}, p.order)
		require.NotNil(t, p.tear)
	}
	ps = subsetPlans(xcands(4), 10, false, cutRNG(0, 0))
	require.Len(t, ps, 2)
	// A one-sector write cannot tear.
	ps = subsetPlans(xcands(1), 10, true, cutRNG(0, 0))
	require.Len(t, ps, 2)

	require.Empty(t, subsetPlans(nil, 10, true, cutRNG(0, 0)))
	require.Empty(t, subsetPlans(cs, 0, true, cutRNG(0, 0)))
}

func TestTearSectorsHuge(t *testing.T) {
	r := cutRNG(3, 3)
	for range 100 {
		rs := tearSectors(1<<20, r)
		require.Len(t, rs, 1, "huge writes tear as a prefix")
		require.True(t, rs[0].Start == 0 && rs[0].End > 0 && rs[0].End < 1<<20)
	}
	for range 100 {
		rs := tearSectors(2, r)
		require.Len(t, rs, 1)
		require.Equal(t, uint64(1), rs[0].End-rs[0].Start)
	}
}
