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
