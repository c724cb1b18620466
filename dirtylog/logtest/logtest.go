// Package logtest is a conformance suite for dirtylog.Log implementations.
//
// Run checks the contract every log type shares, whatever keeps its state
// (memory, a disk bitmap, a server, etcd): region geometry, the start-up
// sync modes, marks and clears, resync work hand-out and the sync count,
// the resync cursor, range checks, Close, allocation-free marks, and
// concurrent use under the race detector. A new log type passes it before
// anything else is tested.
//
//	func TestConformance(t *testing.T) {
//		logtest.Run(t, func(t *testing.T, o dirtylog.Options) dirtylog.Log {
//			l, err := mylog.Open(o)
//			require.NoError(t, err)
//			return l
//		})
//	}
package logtest

import (
	"context"
	"errors"
	"os"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dmlog/dmlog/dirtylog"
)

// Factory returns a fresh log for o.RegionSize, o.DeviceSize and o.Sync,
// with no state left from earlier subtests. The suite closes the log;
// the factory registers any other cleanup with t.Cleanup.
type Factory func(t *testing.T, o dirtylog.Options) dirtylog.Log

const (
	regionSize = 64 << 10
	// 100 regions, the last one partial: not a multiple of 32 or 64.
	deviceSize = 99*regionSize + 4096
	regions    = 100
)

func open(t *testing.T, f Factory, mode dirtylog.SyncMode) dirtylog.Log {
	t.Helper()
	l := f(t, dirtylog.Options{RegionSize: regionSize, DeviceSize: deviceSize, Sync: mode})
	require.NotNil(t, l)
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// Run runs the conformance suite against logs made by f.
func Run(t *testing.T, f Factory) {
	ctx := context.Background()

	t.Run("Geometry", func(t *testing.T) {
		l := open(t, f, dirtylog.NoSync)
		require.EqualValues(t, regionSize, l.RegionSize())
		require.EqualValues(t, regions, l.RegionCount())
		require.NotEmpty(t, l.Status())
		require.NotEmpty(t, l.Table())
	})

	t.Run("NoSyncStartsCleanAndInSync", func(t *testing.T) {
		l := open(t, f, dirtylog.NoSync)
		require.EqualValues(t, regions, l.SyncCount())
		for r := dirtylog.Region(0); r < regions; r++ {
			clean, err := l.IsClean(ctx, r)
			require.NoError(t, err)
			require.True(t, clean, "region %d", r)
			in, err := l.InSync(ctx, r)
			require.NoError(t, err)
			require.True(t, in, "region %d", r)
		}
		_, ok, err := l.ResyncWork(ctx)
		require.NoError(t, err)
		require.False(t, ok, "nosync log has resync work")
	})

	for _, mode := range []dirtylog.SyncMode{dirtylog.DefaultSync, dirtylog.ForceSync} {
		t.Run("FreshLogNeedsFullResync/"+modeName(mode), func(t *testing.T) {
			l := open(t, f, mode)
			require.Zero(t, l.SyncCount())
			for r := dirtylog.Region(0); r < regions; r++ {
				in, err := l.InSync(ctx, r)
				require.NoError(t, err)
				require.False(t, in, "region %d", r)
			}
			// Every region is handed out, in ascending order. The second
			// call tells the two kinds of log apart: one that allows
			// several recoveries at once moves on to region 1; one that
			// allows one at a time returns region 0 again, and keeps
			// returning a region until it is set in sync. A local log
			// (dirtylog.IsLocal: Core, Disk) must be of the first kind.
			work := func(want dirtylog.Region) {
				t.Helper()
				r, ok, err := l.ResyncWork(ctx)
				require.NoError(t, err)
				require.True(t, ok, "no work where region %d was due", want)
				require.Equal(t, want, r)
			}
			work(0)
			r, ok, err := l.ResyncWork(ctx)
			require.NoError(t, err)
			require.True(t, ok)
			require.Contains(t, []dirtylog.Region{0, 1}, r)
			if dirtylog.IsLocal(l) {
				require.EqualValues(t, 1, r, "a local log hands each region out once: region 0 was handed out twice")
			}
			if r == 1 { // several at once: each region handed out once
				for want := dirtylog.Region(2); want < regions; want++ {
					work(want)
				}
				_, ok, err := l.ResyncWork(ctx)
				require.NoError(t, err)
				require.False(t, ok, "a recovering region was handed out twice")
				for r := dirtylog.Region(0); r < regions; r++ {
					l.SetRegionSync(r, true)
				}
			} else { // one at a time: the same region until it is set
				for want := dirtylog.Region(0); want < regions; want++ {
					work(want)
					work(want)
					l.SetRegionSync(want, true)
				}
				_, ok, err := l.ResyncWork(ctx)
				require.NoError(t, err)
				require.False(t, ok, "work left after every region was set in sync")
			}
			require.EqualValues(t, regions, l.SyncCount())
		})
	}

	t.Run("MarkClearFlush", func(t *testing.T) {
		l := open(t, f, dirtylog.NoSync)
		l.MarkRegion(3)
		l.MarkRegion(64)
		l.MarkRegion(99)
		require.NoError(t, l.Flush(ctx))
		for r, want := range map[dirtylog.Region]bool{0: true, 3: false, 63: true, 64: false, 99: false} {
			clean, err := l.IsClean(ctx, r)
			require.NoError(t, err)
			require.Equal(t, want, clean, "region %d", r)
		}
		l.ClearRegion(3)
		l.ClearRegion(64)
		l.ClearRegion(99)
		require.NoError(t, l.Flush(ctx))
		for _, r := range []dirtylog.Region{3, 64, 99} {
			clean, err := l.IsClean(ctx, r)
			require.NoError(t, err)
			require.True(t, clean, "region %d", r)
		}
		// Two marks by one user need one clear.
		l.MarkRegion(7)
		l.MarkRegion(7)
		require.NoError(t, l.Flush(ctx))
		l.ClearRegion(7)
		require.NoError(t, l.Flush(ctx))
		clean, err := l.IsClean(ctx, 7)
		require.NoError(t, err)
		require.True(t, clean)
		// Marks do not change the sync state.
		require.EqualValues(t, regions, l.SyncCount())
	})

	t.Run("EmptyFlush", func(t *testing.T) {
		l := open(t, f, dirtylog.NoSync)
		require.NoError(t, l.Flush(ctx))
		require.NoError(t, l.Flush(ctx))
	})

	t.Run("SetRegionSyncCountsOnce", func(t *testing.T) {
		l := open(t, f, dirtylog.ForceSync)
		r, ok, err := l.ResyncWork(ctx)
		require.NoError(t, err)
		require.True(t, ok)
		l.SetRegionSync(r, true)
		l.SetRegionSync(r, true)
		require.EqualValues(t, 1, l.SyncCount())
		l.SetRegionSync(r, false)
		l.SetRegionSync(r, false)
		require.EqualValues(t, 0, l.SyncCount())
	})

	t.Run("OutOfSyncBehindCursorIsResynced", func(t *testing.T) {
		l := open(t, f, dirtylog.NoSync)
		l.SetRegionSync(50, false)
		r, ok, err := l.ResyncWork(ctx)
		require.NoError(t, err)
		require.True(t, ok)
		require.EqualValues(t, 50, r)
		l.SetRegionSync(50, true)
		_, ok, err = l.ResyncWork(ctx) // the cursor is now past 50
		require.NoError(t, err)
		require.False(t, ok)
		l.SetRegionSync(10, false) // behind the cursor
		r, ok, err = l.ResyncWork(ctx)
		require.NoError(t, err)
		require.True(t, ok, "a region that went out of sync behind the cursor was not handed out")
		require.EqualValues(t, 10, r)
		// A failed recovery puts the region back in the queue.
		l.SetRegionSync(10, false)
		r, ok, err = l.ResyncWork(ctx)
		require.NoError(t, err)
		require.True(t, ok)
		require.EqualValues(t, 10, r)
		l.SetRegionSync(10, true)
		require.EqualValues(t, regions, l.SyncCount())
	})

	t.Run("SuspendResume", func(t *testing.T) {
		// After a resume, resync work is exactly the regions InSync reports
		// out of sync (what a persistent log reloads may differ from what
		// memory held; the two views must agree).
		l := open(t, f, dirtylog.NoSync)
		l.SetRegionSync(20, false)
		l.MarkRegion(30)
		require.NoError(t, l.Flush(ctx))
		require.NoError(t, l.Suspend(ctx))
		require.NoError(t, l.Resume(ctx))
		want := map[dirtylog.Region]bool{}
		for r := dirtylog.Region(0); r < regions; r++ {
			in, err := l.InSync(ctx, r)
			require.NoError(t, err)
			if !in {
				want[r] = true
			}
		}
		require.EqualValues(t, regions-len(want), l.SyncCount())
		got := map[dirtylog.Region]bool{}
		for _, r := range DrainResync(t, l) {
			got[r] = true
		}
		require.Equal(t, want, got)
		require.EqualValues(t, regions, l.SyncCount())
	})

	t.Run("OutOfRange", func(t *testing.T) {
		l := open(t, f, dirtylog.NoSync)
		_, err := l.IsClean(ctx, regions)
		require.ErrorIs(t, err, dirtylog.ErrRegionRange)
		_, err = l.InSync(ctx, regions+1000)
		require.ErrorIs(t, err, dirtylog.ErrRegionRange)
		l.MarkRegion(regions) // ignored, must not panic
		l.ClearRegion(regions)
		l.SetRegionSync(regions, false)
		require.NoError(t, l.Flush(ctx))
		require.EqualValues(t, regions, l.SyncCount())
	})

	t.Run("NonBlockingInSyncAgrees", func(t *testing.T) {
		l := open(t, f, dirtylog.NoSync)
		l.SetRegionSync(5, false)
		nb := dirtylog.NonBlocking(ctx)
		for _, r := range []dirtylog.Region{4, 5} {
			want, err := l.InSync(ctx, r)
			require.NoError(t, err)
			got, err := l.InSync(nb, r)
			if errors.Is(err, dirtylog.ErrWouldBlock) {
				continue
			}
			require.NoError(t, err)
			require.Equal(t, want, got, "region %d", r)
		}
	})

	t.Run("MarkAndClearDoNotAllocate", func(t *testing.T) {
		l := open(t, f, dirtylog.NoSync)
		r := dirtylog.Region(0)
		allocs := testing.AllocsPerRun(1000, func() {
			l.MarkRegion(r % regions)
			l.ClearRegion(r % regions)
			r++
		})
		require.Zero(t, allocs)
		require.NoError(t, l.Flush(ctx))
	})

	t.Run("Concurrent", func(t *testing.T) {
		l := open(t, f, dirtylog.NoSync)
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 200 {
					r := dirtylog.Region((g*31 + i) % regions)
					l.MarkRegion(r)
					if i%10 == 0 {
						if err := l.Flush(ctx); err != nil {
							t.Error(err)
							return
						}
					}
					if _, err := l.InSync(ctx, r); err != nil {
						t.Error(err)
						return
					}
					l.ClearRegion(r)
				}
			}()
		}
		wg.Add(1)
		go func() { // a resyncer racing the writers
			defer wg.Done()
			for i := range 50 {
				l.SetRegionSync(dirtylog.Region(i), false)
				if r, ok, err := l.ResyncWork(ctx); err == nil && ok {
					l.SetRegionSync(r, true)
				}
			}
		}()
		wg.Wait()
		// Drain the resync work the resyncer left first: a clustered log
		// never reports an out-of-sync region clean.
		DrainResync(t, l)
		require.EqualValues(t, regions, l.SyncCount())
		require.NoError(t, l.Flush(ctx))
		for r := dirtylog.Region(0); r < regions; r++ {
			clean, err := l.IsClean(ctx, r)
			require.NoError(t, err)
			require.True(t, clean, "region %d left dirty after every write cleared it", r)
		}
	})

	t.Run("CloseStopsFlush", func(t *testing.T) {
		l := f(t, dirtylog.Options{RegionSize: regionSize, DeviceSize: deviceSize, Sync: dirtylog.NoSync})
		l.MarkRegion(1)
		require.NoError(t, l.Close())
		require.ErrorIs(t, l.Flush(ctx), dirtylog.ErrClosed)
	})

	t.Run("SecondCloseIsErrClosed", func(t *testing.T) {
		// The os.File convention: the first Close succeeds, the second
		// reports that the log is already closed.
		l := f(t, dirtylog.Options{RegionSize: regionSize, DeviceSize: deviceSize, Sync: dirtylog.NoSync})
		require.NoError(t, l.Close())
		err := l.Close()
		require.ErrorIs(t, err, os.ErrClosed, "second Close")
		require.ErrorIs(t, err, dirtylog.ErrClosed, "second Close")
	})
}

// DrainResync takes every region of resync work l hands out, sets each in
// sync as a recoverer that copied it would, and returns them in the order
// they were handed out. It fails tb on an error or on a region handed out
// again after it was set in sync.
func DrainResync(tb testing.TB, l dirtylog.Log) []dirtylog.Region {
	tb.Helper()
	ctx := context.Background()
	var got []dirtylog.Region
	seen := map[dirtylog.Region]bool{}
	for {
		r, ok, err := l.ResyncWork(ctx)
		require.NoError(tb, err)
		if !ok {
			return got
		}
		require.False(tb, seen[r], "region %d handed out twice", r)
		seen[r] = true
		got = append(got, r)
		l.SetRegionSync(r, true)
	}
}

func modeName(m dirtylog.SyncMode) string {
	if m == dirtylog.DefaultSync {
		return "default"
	}
	return m.String()
}
