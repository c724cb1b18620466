package logwrites

import (
	"math/rand/v2"
	"os"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// The extent map agrees with a byte-by-byte model of who wrote what last,
// for random assignments of every shape (inside, across and beyond
// existing extents, across chunk boundaries), and its extents stay sorted,
// disjoint, merged where contiguous and counted right.
func TestExtentMapModel(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, 1))
	maxChunks := 0
	for round := range 40 {
		size := 64 + rng.IntN(8192)
		// model[b] is the log offset of byte b's contents, -1 zeros, -2 unwritten.
		model := make([]int64, size)
		for i := range model {
			model[i] = -2
		}
		var m extentMap
		nops := 1 + rng.IntN(3000)
		for op := range nops {
			a := rng.IntN(size)
			n := 1 + rng.IntN(1+rng.IntN(size-a))
			if round%2 == 0 {
				n = 1 + rng.IntN(min(8, size-a)) // many small extents: many chunks
			}
			x := extent{start: int64(a), end: int64(a + n), src: -1, entry: uint64(op)}
			if rng.IntN(4) != 0 {
				x.src = int64(rng.IntN(1 << 20))
				if rng.IntN(3) == 0 && op > 0 {
					// Continue the model's contents before a, sometimes.
					if a > 0 && model[a-1] >= 0 {
						x.src = model[a-1] + 1
					}
				}
			}
			m.assign(x)
			for b := a; b < a+n; b++ {
				if x.src < 0 {
					model[b] = -1
				} else {
					model[b] = x.src + int64(b-a)
				}
			}
		}
		got := make([]int64, size)
		for i := range got {
			got[i] = -2
		}
		prev := extent{start: -1, end: -1}
		count := 0
		for _, c := range m.chunks {
			require.NotEmpty(t, c)
			require.LessOrEqual(t, len(c), 2*extentChunk)
			for k := 1; k < len(c); k++ {
				require.False(t, c[k-1].contiguous(c[k]), "round %d: contiguous extents not merged: %+v %+v", round, c[k-1], c[k])
			}
		}
		m.all(func(x extent) bool {
			require.Less(t, x.start, x.end, "round %d: empty extent", round)
			require.GreaterOrEqual(t, x.start, prev.end, "round %d: overlapping or unsorted extents", round)
			for b := x.start; b < x.end; b++ {
				if x.src < 0 {
					got[b] = -1
				} else {
					got[b] = x.src + (b - x.start)
				}
			}
			prev = x
			count++
			return true
		})
		require.Equal(t, count, m.n, "round %d: extent count", round)
		maxChunks = max(maxChunks, len(m.chunks))
		require.Equal(t, model, got, "round %d (seed %d)", round, seed)
	}
	require.Greater(t, maxChunks, 2, "the rounds exercise several chunks")
}

// testSeed returns the seed of a random test: 1, or DMLOG_SEED if set. It
// is printed so that a failure can be replayed.
func testSeed(t testing.TB) uint64 {
	t.Helper()
	seed := uint64(1)
	if s := os.Getenv("DMLOG_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 0, 64)
		require.NoError(t, err, "DMLOG_SEED")
		seed = v
	}
	t.Logf("seed %d (set DMLOG_SEED to change)", seed)
	return seed
}
