package logtest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dmlog/dmlog/dirtylog"
)

// ClusterOptions describes the shared log a ClusterFactory builds.
type ClusterOptions struct {
	// Nodes is how many nodes the cluster starts with.
	Nodes int
	// RegionSize, DeviceSize and Sync are the log's geometry and start-up
	// mode, as in dirtylog.Options.
	RegionSize int64
	DeviceSize int64
	Sync       dirtylog.SyncMode
	// DeadAfter is how soon after Kill the backend must declare the node
	// dead; the factory configures its backend with it. The suite waits
	// up to DeadAfter plus ClusterSlack for a death's effects.
	DeadAfter time.Duration
}

// ClusterSlack is how much longer than ClusterOptions.DeadAfter the suite
// waits for a dead node's marks to turn into resync work.
const ClusterSlack = 10 * time.Second

// Cluster is one clustered log seen by several nodes, each through its own
// dirtylog.Log (its own connection, session or lease).
type Cluster interface {
	// Node returns node i's log: 0 ≤ i < Nodes, then the nodes Join added.
	Node(i int) dirtylog.Log
	// Kill makes node i die as a crashed process would: no suspend, no
	// close, its connection or lease dropped. Node(i) is not used again.
	Kill(i int)
	// Join adds a node to the running cluster and returns its index.
	Join() int
}

// Restarter is implemented by a Cluster whose shared state service can be
// restarted under running nodes (a log server, an etcd cluster). The nodes
// must reconnect by themselves; what was flushed must survive.
type Restarter interface {
	Restart()
}

// ClusterFactory builds a fresh cluster for o. It registers cleanup (closing
// the nodes and the service) with t.Cleanup.
type ClusterFactory func(t *testing.T, o ClusterOptions) Cluster

const (
	clRegionSize = 64 << 10
	clRegions    = 100
	clDeviceSize = (clRegions-1)*clRegionSize + 4096
	clDeadAfter  = 150 * time.Millisecond
)

// RunCluster runs the cluster scenarios (cmirrord's semantics with
// dmlog's fixes; reference/dm-dirty-log.md §5 and §6) against clusters
// made by f:
//
//   - marks are per node: a region marked by several nodes is clean only
//     after every one of them cleared it, and only if it is in sync; two
//     marks by one node need one clear;
//   - one region is recovered at a time, cluster-wide: until
//     SetRegionSync ends its recovery, the node that claimed it gets the
//     same region each time it asks, and the others get no work;
//   - RemoteRecovering is true for any out-of-sync region and moves it to
//     the front of the resync queue;
//   - what one node's call acknowledged (a flushed mark, a set-sync) is
//     seen by every other node's next call, and by a node that joins;
//   - a node that dies (Kill) is declared dead after DeadAfter: its marked
//     regions become out of sync (resync work, then clean once resynced)
//     and its recovery claims are released;
//   - with Restarter, a restart of the service loses nothing flushed.
func RunCluster(t *testing.T, f ClusterFactory) {
	ctx := context.Background()
	mk := func(t *testing.T, nodes int, mode dirtylog.SyncMode) Cluster {
		c := f(t, ClusterOptions{Nodes: nodes, RegionSize: clRegionSize, DeviceSize: clDeviceSize,
			Sync: mode, DeadAfter: clDeadAfter})
		require.NotNil(t, c)
		return c
	}

	t.Run("MarksArePerNode", func(t *testing.T) {
		c := mk(t, 2, dirtylog.NoSync)
		a, b := c.Node(0), c.Node(1)
		a.MarkRegion(5)
		b.MarkRegion(5)
		require.NoError(t, a.Flush(ctx))
		require.NoError(t, b.Flush(ctx))
		a.ClearRegion(5)
		require.NoError(t, a.Flush(ctx))
		requireClean(t, false, 5, a, b)
		b.ClearRegion(5)
		require.NoError(t, b.Flush(ctx))
		requireClean(t, true, 5, a, b)
	})

	t.Run("TwoMarksByOneNodeNeedOneClear", func(t *testing.T) {
		c := mk(t, 2, dirtylog.NoSync)
		a, b := c.Node(0), c.Node(1)
		a.MarkRegion(3)
		require.NoError(t, a.Flush(ctx))
		a.MarkRegion(3)
		require.NoError(t, a.Flush(ctx))
		requireClean(t, false, 3, a, b)
		a.ClearRegion(3)
		require.NoError(t, a.Flush(ctx))
		requireClean(t, true, 3, a, b)
	})

	t.Run("ThreeNodes", func(t *testing.T) {
		c := mk(t, 3, dirtylog.NoSync)
		nodes := []dirtylog.Log{c.Node(0), c.Node(1), c.Node(2)}
		for _, n := range nodes {
			n.MarkRegion(9)
			require.NoError(t, n.Flush(ctx))
		}
		for i, n := range nodes {
			requireClean(t, false, 9, nodes...)
			n.ClearRegion(9)
			require.NoError(t, n.Flush(ctx))
			requireClean(t, i == len(nodes)-1, 9, nodes...)
		}
	})

	t.Run("OutOfSyncRegionIsNeverClean", func(t *testing.T) {
		c := mk(t, 2, dirtylog.NoSync)
		a, b := c.Node(0), c.Node(1)
		a.SetRegionSync(8, false)
		requireInSync(t, false, 8, a, b)
		a.MarkRegion(8)
		require.NoError(t, a.Flush(ctx))
		a.ClearRegion(8)
		require.NoError(t, a.Flush(ctx))
		requireClean(t, false, 8, a, b)
		r, ok, err := b.ResyncWork(ctx)
		require.NoError(t, err)
		require.True(t, ok)
		require.EqualValues(t, 8, r)
		b.SetRegionSync(8, true)
		requireInSync(t, true, 8, a, b)
		requireClean(t, true, 8, a, b)
		require.EqualValues(t, clRegions, a.SyncCount())
	})

	t.Run("OneRecovererAtATime", func(t *testing.T) {
		c := mk(t, 2, dirtylog.ForceSync)
		a, b := c.Node(0), c.Node(1)
		r0 := requireWork(t, a, true)
		_ = requireWork(t, b, false)
		require.Equal(t, r0, requireWork(t, a, true), "asking again must return the same region to the same node")
		_ = requireWork(t, b, false)
		a.SetRegionSync(r0, true)
		r1 := requireWork(t, b, true)
		require.NotEqual(t, r0, r1, "a region set in sync was handed out again")
		_ = requireWork(t, a, false) // b is the recoverer now
		require.Equal(t, r1, requireWork(t, b, true))
		// A failed recovery (set out of sync) also ends the claim: the
		// region stays resync work, for whoever asks next.
		b.SetRegionSync(r1, false)
		r2 := requireWork(t, a, true)
		_ = requireWork(t, b, false)
		a.SetRegionSync(r2, true)
		r3 := requireWork(t, b, true)
		require.NotContains(t, []dirtylog.Region{r0, r2}, r3)
		b.SetRegionSync(r3, true)
		require.EqualValues(t, 3, a.SyncCount())
		require.EqualValues(t, 3, b.SyncCount())
	})

	t.Run("RemoteRecoveringJumpsTheQueue", func(t *testing.T) {
		c := mk(t, 2, dirtylog.ForceSync)
		a, b := c.Node(0), c.Node(1)
		rec, err := a.RemoteRecovering(ctx, 40)
		require.NoError(t, err)
		require.True(t, rec, "an out-of-sync region must be reported as recovering")
		r := requireWork(t, b, true)
		require.EqualValues(t, 40, r, "the region a writer waits for must be resynced first")
		rec, err = a.RemoteRecovering(ctx, 40)
		require.NoError(t, err)
		require.True(t, rec, "a region being copied is still recovering")
		b.SetRegionSync(40, true)
		rec, err = a.RemoteRecovering(ctx, 40)
		require.NoError(t, err)
		require.False(t, rec)
		rec, err = a.RemoteRecovering(ctx, 41)
		require.NoError(t, err)
		require.True(t, rec)
		// The normal order resumes after the priority region.
		require.EqualValues(t, 41, requireWork(t, b, true))
	})

	t.Run("InSyncLogHasNothingRecovering", func(t *testing.T) {
		c := mk(t, 2, dirtylog.NoSync)
		for r := dirtylog.Region(0); r < clRegions; r += 9 {
			rec, err := c.Node(1).RemoteRecovering(ctx, r)
			require.NoError(t, err)
			require.False(t, rec, "region %d", r)
		}
		_ = requireWork(t, c.Node(0), false)
	})

	t.Run("AcknowledgedIsSeenByOthers", func(t *testing.T) {
		c := mk(t, 2, dirtylog.NoSync)
		a, b := c.Node(0), c.Node(1)
		a.MarkRegion(17)
		require.NoError(t, a.Flush(ctx))
		requireClean(t, false, 17, b)
		a.SetRegionSync(18, false)
		requireInSync(t, false, 18, b)
		require.EqualValues(t, clRegions-1, b.SyncCount())
		b.SetRegionSync(18, true)
		requireInSync(t, true, 18, a)
		require.EqualValues(t, clRegions, a.SyncCount())
	})

	t.Run("JoinerSeesAgreedState", func(t *testing.T) {
		c := mk(t, 2, dirtylog.NoSync)
		a := c.Node(0)
		a.MarkRegion(10)
		require.NoError(t, a.Flush(ctx))
		a.SetRegionSync(20, false)
		j := c.Node(c.Join())
		requireClean(t, false, 10, j)
		requireInSync(t, false, 20, j)
		requireInSync(t, true, 10, j)
		require.Equal(t, a.SyncCount(), j.SyncCount())
		require.EqualValues(t, 20, requireWork(t, j, true))
		j.SetRegionSync(20, true)
		a.ClearRegion(10)
		require.NoError(t, a.Flush(ctx))
		requireClean(t, true, 10, j, a)
	})

	t.Run("DeadNodesMarksAreResynced", func(t *testing.T) {
		c := mk(t, 2, dirtylog.NoSync)
		a, b := c.Node(0), c.Node(1)
		a.MarkRegion(11)
		a.MarkRegion(70)
		require.NoError(t, a.Flush(ctx))
		b.MarkRegion(13)
		require.NoError(t, b.Flush(ctx))
		c.Kill(0)
		waitFor(t, func() bool {
			x, err1 := b.InSync(ctx, 11)
			y, err2 := b.InSync(ctx, 70)
			return err1 == nil && err2 == nil && !x && !y
		}, "a dead node's marked regions never went out of sync")
		requireInSync(t, true, 13, b)
		requireClean(t, false, 11, b)
		require.ElementsMatch(t, []dirtylog.Region{11, 70}, DrainResync(t, b))
		requireClean(t, true, 11, b)
		requireClean(t, true, 70, b)
		requireClean(t, false, 13, b)
		b.ClearRegion(13)
		require.NoError(t, b.Flush(ctx))
		requireClean(t, true, 13, b)
		require.EqualValues(t, clRegions, b.SyncCount())
	})

	t.Run("DeadRecoverersClaimIsReleased", func(t *testing.T) {
		c := mk(t, 2, dirtylog.ForceSync)
		a, b := c.Node(0), c.Node(1)
		r := requireWork(t, a, true)
		_ = requireWork(t, b, false)
		c.Kill(0)
		var got dirtylog.Region
		waitFor(t, func() bool {
			w, ok, err := b.ResyncWork(ctx)
			got = w
			return err == nil && ok
		}, "a dead recoverer's claim was never released")
		require.Equal(t, r, got, "the released region must be recovered first")
	})

	t.Run("ConcurrentNodes", func(t *testing.T) {
		const nodes = 3
		c := mk(t, nodes, dirtylog.NoSync)
		var wg sync.WaitGroup
		for i := range nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				me, other := c.Node(i), c.Node((i+1)%nodes)
				for k := range 60 {
					r := dirtylog.Region((i*7 + k*3) % clRegions)
					me.MarkRegion(r)
					if err := me.Flush(ctx); err != nil {
						t.Error(err)
						return
					}
					// Acknowledged: every other node sees r dirty now.
					if clean, err := other.IsClean(ctx, r); err != nil || clean {
						t.Errorf("node %d: region %d reads clean=%v (err %v) on node %d after a flushed mark",
							i, r, clean, err, (i+1)%nodes)
						return
					}
					me.ClearRegion(r)
					if k%4 == 0 {
						if err := me.Flush(ctx); err != nil {
							t.Error(err)
							return
						}
					}
				}
				if err := me.Flush(ctx); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		for r := dirtylog.Region(0); r < clRegions; r++ {
			requireClean(t, true, r, c.Node(0))
		}
		require.EqualValues(t, clRegions, c.Node(1).SyncCount())
	})

	t.Run("RestartLosesNothingFlushed", func(t *testing.T) {
		c := mk(t, 2, dirtylog.NoSync)
		rs, ok := c.(Restarter)
		if !ok {
			t.Skip("the cluster's service cannot be restarted")
		}
		a, b := c.Node(0), c.Node(1)
		a.MarkRegion(7)
		a.MarkRegion(77)
		require.NoError(t, a.Flush(ctx))
		rs.Restart()
		waitFor(t, func() bool {
			x, err1 := b.IsClean(ctx, 7)
			y, err2 := b.IsClean(ctx, 77)
			return err1 == nil && err2 == nil && !x && !y
		}, "flushed marks lost across a restart")
		requireClean(t, true, 8, b)
		// The node that marked can still finish its writes.
		a.ClearRegion(7)
		require.NoError(t, a.Flush(ctx))
	})
}

func waitFor(t *testing.T, cond func() bool, msg string) {
	t.Helper()
	deadline := time.Now().Add(clDeadAfter + ClusterSlack)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal(msg)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func requireClean(t *testing.T, want bool, r dirtylog.Region, logs ...dirtylog.Log) {
	t.Helper()
	for i, l := range logs {
		got, err := l.IsClean(context.Background(), r)
		require.NoError(t, err)
		require.Equal(t, want, got, "IsClean(%d) seen by node %d", r, i)
	}
}

func requireInSync(t *testing.T, want bool, r dirtylog.Region, logs ...dirtylog.Log) {
	t.Helper()
	for i, l := range logs {
		got, err := l.InSync(context.Background(), r)
		require.NoError(t, err)
		require.Equal(t, want, got, "InSync(%d) seen by node %d", r, i)
	}
}

func requireWork(t *testing.T, l dirtylog.Log, want bool) dirtylog.Region {
	t.Helper()
	r, ok, err := l.ResyncWork(context.Background())
	require.NoError(t, err)
	require.Equal(t, want, ok, fmt.Sprintf("ResyncWork returned region %d, ok=%v", r, ok))
	return r
}
