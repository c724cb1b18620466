package logwrites

import (
	"bytes"
	"fmt"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestExploreLaterDurableWriteWins is the superblock case: a program
// writes superblock v1 (a plain write), then v2 with FUA to the same
// sector, and marks v2 as committed once the FUA write returned. No state
// after v2's completion may show v1 on top of v2: the device acknowledged
// v2 as stable after v1 had completed, so v1 cannot land later. Only at the
// cut that interrupts the FUA write itself may v1 (or base) be there.
func TestExploreLaterDurableWriteWins(t *testing.T) {
	for _, wide := range []bool{false, true} {
		t.Run(fmt.Sprintf("v1 covers more sectors: %v", wide), func(t *testing.T) {
			v1, v2, other := xdata('1', 1), xdata('2', 1), xdata('x', 1)
			if wide {
				v1 = xdata('1', 4) // sectors 0..3; only sector 0 is rewritten by v2
			}
			// 0: W v1@0  1: FUA v2@0  2: mark sb2  3: W other@5  4: FLUSH
			l := newHandLog(512).write(0, 0, v1).write(0, FlagFUA, v2).mark("sb2").write(5, 0, other).flush(FlagFlush).open(t)
			base := make([]byte, 8*512)
			states, st := xexplore(t, l, base, ExploreOptions{MaxSubsetStates: 100, Tear: true, MaxStates: -1, EveryEntry: true})
			require.Positive(t, st.Subset)
			sawV1Rest := false
			for _, s := range states {
				dev := &memDev{b: bytes.Clone(base)}
				require.NoError(t, ReplayState(l, s.d, dev))
				require.True(t, bytes.Equal(dev.b, s.img), "%v replays byte for byte", s.d)
				if s.d.Cut <= 2 {
					continue // v2 had not completed
				}
				require.True(t, bytes.Equal(v2, s.img[:512]), "%v: v1 landed on top of the later FUA write v2", s.d)
				require.Equal(t, "sb2", s.d.Mark)
				if wide && bytes.Equal(s.img[512:4*512], v1[512:]) {
					sawV1Rest = true // v1's other sectors may still land
				}
			}
			if wide {
				require.True(t, sawV1Rest, "the sectors of v1 that v2 does not cover are kept in some state")
			}
		})
	}
}

// TestExploreDurableNeverOverwrittenByEarlierWrite checks the ordering
// model on random logs, independently of Explore's code: in every state,
// each 512-byte block that some write durable at the cut covers holds the
// data of the last durable write to it, or data that a later write (in log
// order, before the cut) put there. Torn writes included.
func TestExploreDurableNeverOverwrittenByEarlierWrite(t *testing.T) {
	const dev = 64
	for seed := range uint64(6) {
		x := xrandomLog(seed, 90, dev)
		l := x.open(t)
		es := allEntries(t, l)
		// Each entry's 512-byte blocks and data (zeros for a discard).
		type ext struct {
			lo, hi int64
			data   []byte
		}
		exts := make([]ext, len(es))
		for i, e := range es {
			if e.Flags&FlagMark != 0 || e.NrSectors == 0 {
				continue
			}
			b := make([]byte, e.Length(512))
			require.NoError(t, l.ReadData(e, b))
			exts[i] = ext{e.Offset(512) / 512, (e.Offset(512) + int64(len(b))) / 512, b}
		}
		base := xdata(0xC0, dev)
		o := ExploreOptions{MaxSubsetStates: 24 + int(seed)*8, Tear: seed%2 == 0, Seed: seed, MaxStates: -1}
		states, st := xexplore(t, l, base, o)
		require.Positive(t, st.Subset)
		checked, masked := 0, 0
		for _, s := range states {
			c := s.d.Cut
			// Count the states in which the rule bites: a non-durable write
			// applied that overlaps a later durable one.
			for _, v := range s.d.Apply[s.d.Durable:] {
				for _, f := range s.d.Apply[:s.d.Durable] {
					if f > v && exts[f].lo < exts[v].hi && exts[v].lo < exts[f].hi {
						masked++
					}
				}
			}
			// A FUA write the cut interrupted is not durable.
			inflight := c > 0 && es[c-1].Flags&(FlagFUA|FlagFlush) == FlagFUA &&
				!slices.Contains(s.d.Apply[:s.d.Durable], c-1) && s.d.Kind == SubsetState
			durable := func(i uint64) bool {
				if exts[i].data == nil {
					return false
				}
				if es[i].Flags&FlagFUA != 0 && !(inflight && i == c-1) {
					return true
				}
				for j := i + 1; j < c; j++ {
					if es[j].Flags&FlagFlush != 0 {
						return true
					}
				}
				return false
			}
			for blk := int64(0); blk < dev; blk++ {
				last := -1
				for i := uint64(0); i < c; i++ {
					if durable(i) && exts[i].lo <= blk && blk < exts[i].hi {
						last = int(i)
					}
				}
				if last < 0 {
					continue
				}
				got := s.img[blk*512 : (blk+1)*512]
				ok := false
				for i := uint64(last); i < c && !ok; i++ {
					e := exts[i]
					if e.data != nil && e.lo <= blk && blk < e.hi {
						ok = bytes.Equal(got, e.data[(blk-e.lo)*512:(blk-e.lo+1)*512])
					}
				}
				require.True(t, ok, "seed %d, %v: block %d holds neither durable entry %d's data nor a later write's", seed, s.d, blk, last)
				checked++
			}
		}
		require.Positive(t, checked)
		require.Positive(t, masked, "seed %d: some state applies a write under a later durable one", seed)
	}
}
