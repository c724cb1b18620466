package logwrites

import (
	"io"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDescriptionString(t *testing.T) {
	d := Description{ID: 12, Kind: SubsetState, Seed: 1, Cut: 40, Prefix: 30, Mark: "m1",
		Apply: []uint64{30, 31, 32, 33, 36, 38, 39}, Dropped: []uint64{34, 35, 37},
		Tear: &Tear{Entry: 39, Kept: []SectorRange{{0, 2}, {5, 6}}}}
	require.Equal(t, `state 12 (subset, seed 1): cut before entry 40 (after mark "m1"): entries 0..29 replayed, then 30..33, 36, 38, 39 (39 torn: kept sectors 0-1,5); dropped 34, 35, 37`, d.String())
	require.Equal(t, "state 0 (prefix, seed 0): cut before entry 0: no entries replayed", Description{}.String())
	require.Equal(t, "StateKind(7)", StateKind(7).String())
	d = Description{ID: 3, Kind: SubsetState, Cut: 9, Prefix: 4, Apply: []uint64{5, 7, 6, 4}, Durable: 2, Dropped: []uint64{8}}
	require.Equal(t, `state 3 (subset, seed 0): cut before entry 9: entries 0..3 replayed, then durable 5, 7, then 6, 4; dropped 8`, d.String())
}

func TestSectorRangeArithmetic(t *testing.T) {
	var rs []SectorRange
	for _, r := range []SectorRange{{10, 12}, {2, 4}, {4, 5}, {20, 20}, {7, 8}, {11, 15}, {30, 31}} {
		rs = addRange(rs, r)
	}
	require.Equal(t, []SectorRange{{2, 5}, {7, 8}, {10, 15}, {30, 31}}, rs, "merged, sorted, empty ranges ignored")
	require.Equal(t, []SectorRange{{0, 2}, {5, 7}, {8, 10}, {15, 16}}, subtractRanges([]SectorRange{{0, 16}}, rs))
	require.Equal(t, []SectorRange{{12, 13}}[:0], subtractRanges([]SectorRange{{11, 14}, {3, 4}}, rs), "entirely masked")
	require.Equal(t, []SectorRange{{15, 17}, {0, 2}}, subtractRanges([]SectorRange{{14, 17}, {0, 3}}, rs), "order of rs kept")
	require.Equal(t, []SectorRange{{0, 3}}, subtractRanges([]SectorRange{{0, 3}}, nil))
}

func TestZeroState(t *testing.T) {
	var s State
	require.Zero(t, s.Size())
	_, err := s.ReadAt(make([]byte, 1), 0)
	require.ErrorIs(t, err, io.EOF)
	b, err := s.Bytes()
	require.NoError(t, err)
	require.Empty(t, b)
}
