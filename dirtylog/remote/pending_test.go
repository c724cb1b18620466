package remote

import (
	"slices"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dmlog/dmlog/dirtylog"
)

func TestPendingSet(t *testing.T) {
	const regions = 1 << 20
	s := newPendingSet(regions)
	require.Empty(t, s.take(nil))
	for _, r := range []dirtylog.Region{regions - 1, 0, 64, 4095, 4096, 63} {
		s.add(r)
		s.add(r)
	}
	s.remove(64)
	require.True(t, s.has(4096))
	require.False(t, s.has(64))
	require.Equal(t, []dirtylog.Region{0, 63, 4095, 4096, regions - 1}, s.take(nil))
	require.Empty(t, s.take(nil), "take must empty the set")
	require.False(t, s.has(0))

	// Adds racing with takes: every region added is taken exactly once.
	const writers, each = 4, 5000
	var wg sync.WaitGroup
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				s.add(dirtylog.Region((i*writers + g) * 193 % regions))
			}
		}()
	}
	var got []dirtylog.Region
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
		}
		got = s.take(got)
	}
	got = s.take(got)
	slices.Sort(got)
	require.Len(t, got, writers*each)
	require.Len(t, slices.Compact(got), writers*each, "a region was taken twice")
}
