package etcdlog

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dmlog/dmlog/dirtylog"
)

// TestFlushCallback: the callback runs before a flush that commits clears
// (not before a marks-only flush); when it fails, every region of this
// node stays dirty and later clears are ignored, as with the disk log.
func TestFlushCallback(t *testing.T) {
	t.Parallel() // waits on leases and members, not on the CPU
	c := startCluster(t, 1)
	var calls atomic.Int32
	var fail atomic.Bool
	var events []dirtylog.Event
	o := Options{Name: "vol", RegionSize: 1 << 16, DeviceSize: 100 << 16, Sync: dirtylog.NoSync, LeaseTTL: 5 * time.Second,
		FlushCallback: func() error {
			calls.Add(1)
			if fail.Load() {
				return errors.New("leg sync failed")
			}
			return nil
		},
		OnEvent: func(e dirtylog.Event) { events = append(events, e) },
	}
	a := openNode(t, c.client(t), o, "a")
	o.FlushCallback, o.OnEvent = nil, nil
	b := openNode(t, c.client(t), o, "b")
	ctx := testCtx(t)
	a.MarkRegion(1)
	require.NoError(t, a.Flush(ctx))
	require.Zero(t, calls.Load(), "callback before a marks-only flush")
	a.ClearRegion(1)
	require.NoError(t, a.Flush(ctx))
	require.EqualValues(t, 1, calls.Load())
	clean, err := b.IsClean(ctx, 1)
	require.NoError(t, err)
	require.True(t, clean)

	fail.Store(true)
	a.MarkRegion(2)
	require.NoError(t, a.Flush(ctx))
	a.ClearRegion(2)
	require.NoError(t, a.Flush(ctx)) // the marks are committed; the clear is not
	require.EqualValues(t, 2, calls.Load())
	for _, r := range []dirtylog.Region{0, 2, 99} {
		clean, err := b.IsClean(ctx, r)
		require.NoError(t, err)
		require.False(t, clean, "region %d must be dirty after a callback failure", r)
	}
	a.ClearRegion(2)
	require.NoError(t, a.Flush(ctx))
	clean, err = b.IsClean(ctx, 2)
	require.NoError(t, err)
	require.False(t, clean, "a clear after a callback failure was applied")
	require.Len(t, events, 1)
	require.Equal(t, dirtylog.EventFlushCallbackFailed, events[0].Kind)
	require.Contains(t, a.Status(), " D")
}

// TestSuspendHaltsRecovery: a suspended node hands out no resync work and
// reports nothing recovering (cmirrord's recovery_halted); Resume undoes it.
func TestSuspendHaltsRecovery(t *testing.T) {
	t.Parallel() // waits on leases and members, not on the CPU
	c := startCluster(t, 1)
	o := vol(dirtylog.ForceSync)
	a := openNode(t, c.client(t), o, "a")
	ctx := testCtx(t)
	require.NoError(t, a.Suspend(ctx))
	_, ok, err := a.ResyncWork(ctx)
	require.NoError(t, err)
	require.False(t, ok)
	rec, err := a.RemoteRecovering(ctx, 3)
	require.NoError(t, err)
	require.False(t, rec)
	require.NoError(t, a.Resume(ctx))
	r, ok, err := a.ResyncWork(ctx)
	require.NoError(t, err)
	require.True(t, ok)
	require.EqualValues(t, 0, r)
	rec, err = a.RemoteRecovering(ctx, 3)
	require.NoError(t, err)
	require.True(t, rec)
}

// TestNonBlockingRemoteRecovering answers from the cache and files the
// priority request in the background.
func TestNonBlockingRemoteRecovering(t *testing.T) {
	t.Parallel() // waits on leases and members, not on the CPU
	c := startCluster(t, 1)
	o := vol(dirtylog.ForceSync)
	a := openNode(t, c.client(t), o, "a")
	b := openNode(t, c.client(t), o, "b")
	ctx := testCtx(t)
	rec, err := a.RemoteRecovering(nb, 77)
	require.NoError(t, err)
	require.True(t, rec)
	eventually(t, 10*time.Second, func() bool { return b.c.hasPrio(77) }, "the background priority request never arrived")
	r, ok, err := b.ResyncWork(ctx)
	require.NoError(t, err)
	require.True(t, ok)
	require.EqualValues(t, 77, r)
	b.SetRegionSync(77, true)
	eventually(t, 10*time.Second, func() bool { return !a.c.hasPrio(77) }, "the priority request outlived the resync")
	rec, err = a.RemoteRecovering(ctx, 77)
	require.NoError(t, err)
	require.False(t, rec)
}

// TestSyncModeOnlyAtCreation: as with cmirrord, a node opening an existing
// log with sync or nosync does not reset the cluster's state.
func TestSyncModeOnlyAtCreation(t *testing.T) {
	t.Parallel() // waits on leases and members, not on the CPU
	c := startCluster(t, 1)
	o := vol(dirtylog.NoSync)
	a := openNode(t, c.client(t), o, "a")
	a.SetRegionSync(9, false)
	o.Sync = dirtylog.ForceSync
	b := openNode(t, c.client(t), o, "b")
	require.EqualValues(t, 99, b.SyncCount())
	require.Equal(t, "etcd 3 vol 128 sync ", b.Table())
	require.Equal(t, "etcd 3 vol 128 nosync ", a.Table())
	require.Equal(t, "3 etcd vol A", b.Status())
}

// TestSyncCountSeesOtherNodes: SyncCount on one node counts a
// SetRegionSync another node's call already returned from, even while the
// first node's watch lags behind.
func TestSyncCountSeesOtherNodes(t *testing.T) {
	t.Parallel() // waits on leases and members, not on the CPU
	c := startCluster(t, 1)
	o := vol(dirtylog.NoSync)
	a := openNode(t, c.client(t), o, "a")
	b := openNode(t, c.client(t), o, "b")
	resume := b.pauseWatch()
	a.SetRegionSync(5, false)
	require.EqualValues(t, 100, b.c.syncCount.Load(), "b's paused cache saw the change: the test did not test")
	// Resume the watch exactly when SyncCount waits for it (no sleep: a
	// SyncCount that answered from the stale cache never calls the hook).
	var called atomic.Bool
	hook := func(int64) {
		if !called.Swap(true) {
			resume()
		}
	}
	b.barrierWaits.Store(&hook)
	require.EqualValues(t, 99, b.SyncCount())
	b.barrierWaits.Store(nil)
	require.True(t, called.Load(), "SyncCount never waited for the paused watch")
}

// TestFlushRetryKeepsCallbackOrder: a flush whose transaction is retried
// (another node changed a pristine chunk it rewrites) commits only the
// clears made before its FlushCallback ran: a clear made during the
// callback waits for the next flush, whose callback syncs its data.
func TestFlushRetryKeepsCallbackOrder(t *testing.T) {
	t.Parallel() // waits on leases and members, not on the CPU
	c := startCluster(t, 1)
	ctx := testCtx(t)
	var a, b *Log
	var calls atomic.Int32
	o := vol(dirtylog.DefaultSync)
	o.FlushCallback = func() error {
		if calls.Add(1) == 1 {
			// Meanwhile: a write to region 2 completes on a (its data not
			// synced by this call), and b's first write to a pristine
			// region of the same chunk makes a's transaction retry.
			a.ClearRegion(2)
			b.MarkRegion(4)
			require.NoError(t, b.Flush(ctx))
		}
		return nil
	}
	a = openNode(t, c.client(t), o, "a")
	o.FlushCallback = nil
	b = openNode(t, c.client(t), o, "b")
	a.MarkRegion(1)
	a.MarkRegion(2)
	require.NoError(t, a.Flush(ctx))
	a.SetRegionSync(1, true)
	a.SetRegionSync(2, true)
	a.ClearRegion(1) // a clear: the callback runs
	a.MarkRegion(3)  // a pristine region: the pristine chunk is rewritten
	require.NoError(t, a.Flush(ctx))
	require.EqualValues(t, 1, calls.Load())
	clean, err := b.IsClean(ctx, 1)
	require.NoError(t, err)
	require.True(t, clean, "the clear made before the callback was not committed")
	clean, err = b.IsClean(ctx, 2)
	require.NoError(t, err)
	require.False(t, clean, "a clear made during the callback was committed without its sync")
	require.NoError(t, a.Flush(ctx))
	require.EqualValues(t, 2, calls.Load())
	clean, err = b.IsClean(ctx, 2)
	require.NoError(t, err)
	require.True(t, clean)
}

// TestCorruptValuesAreSafe: undecodable values that reach a running node
// through the watch put it on the safe side (a corrupt sync chunk is out
// of sync, a corrupt mark chunk marks every region of it, Status says D),
// and a node opening the log then fails with ErrCorrupt.
func TestCorruptValuesAreSafe(t *testing.T) {
	t.Parallel() // waits on leases and members, not on the CPU
	c := startCluster(t, 1)
	cli := c.client(t)
	ctx := testCtx(t)
	a := openNode(t, cli, vol(dirtylog.NoSync), "a")
	_, err := cli.Put(ctx, a.k.sync(0), "\x02garbage")
	require.NoError(t, err)
	_, err = cli.Put(ctx, a.k.mark("ghost", 0), "\x07")
	require.NoError(t, err)
	in, err := a.InSync(ctx, 42)
	require.NoError(t, err)
	require.False(t, in, "a corrupt sync chunk must read as out of sync")
	clean, err := a.IsClean(ctx, 42)
	require.NoError(t, err)
	require.False(t, clean, "a corrupt mark chunk must read as marked")
	require.Equal(t, "3 etcd vol D", a.Status())
	require.Zero(t, a.SyncCount())

	o := vol(dirtylog.NoSync)
	o.Node = "b"
	_, err = Open(ctx, c.client(t), o)
	require.ErrorIs(t, err, ErrCorrupt)
}
