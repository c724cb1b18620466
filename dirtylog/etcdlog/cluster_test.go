package etcdlog

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dmlog/dmlog/dirtylog"
	"github.com/dmlog/dmlog/dirtylog/logtest"
)

// testCluster adapts nodes of one etcdlog log to logtest.Cluster: every
// node has its own client (connection) and lease.
type testCluster struct {
	t     *testing.T
	etcd  *cluster
	opts  Options
	mu    sync.Mutex
	nodes []*Log
}

func (tc *testCluster) Node(i int) dirtylog.Log {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	return tc.nodes[i]
}

func (tc *testCluster) Kill(i int) {
	tc.mu.Lock()
	l := tc.nodes[i]
	tc.mu.Unlock()
	l.abandon()
}

func (tc *testCluster) Join() int {
	tc.t.Helper()
	cli := tc.etcd.client(tc.t)
	o := tc.opts
	tc.mu.Lock()
	o.Node = fmt.Sprintf("node-%d", len(tc.nodes))
	tc.mu.Unlock()
	l, err := Open(testCtx(tc.t), cli, o)
	require.NoError(tc.t, err)
	tc.t.Cleanup(func() { _ = l.Close() })
	tc.mu.Lock()
	defer tc.mu.Unlock()
	tc.nodes = append(tc.nodes, l)
	return len(tc.nodes) - 1
}

// Restart stops and restarts every etcd member under the running nodes.
func (tc *testCluster) Restart() {
	for i := range tc.etcd.members {
		tc.etcd.stop(i)
	}
	for i := range tc.etcd.members {
		tc.etcd.restart(i)
	}
}

func logName(t *testing.T) string {
	return strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
}

// TestClusterScenarios runs the shared cluster scenarios (the remote log
// server's) against etcdlog nodes on one in-process etcd member per
// subtest.
func TestClusterScenarios(t *testing.T) {
	t.Parallel() // waits on leases and members, not on the CPU
	logtest.RunCluster(t, func(t *testing.T, o logtest.ClusterOptions) logtest.Cluster {
		tc := &testCluster{t: t, etcd: startCluster(t, 1), opts: Options{
			Name: logName(t), RegionSize: o.RegionSize, DeviceSize: o.DeviceSize, Sync: o.Sync,
			// Longer than DeadAfter (etcd's minimum is 1 s), and long enough
			// for the nodes to keep their leases across Restart (about
			// 0.2 s in-process) and through a loaded CI machine's stalls.
			LeaseTTL: 3 * time.Second,
		}}
		for range o.Nodes {
			tc.Join()
		}
		return tc
	})
}
