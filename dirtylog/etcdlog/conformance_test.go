package etcdlog

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dmlog/dmlog/dirtylog"
	"github.com/dmlog/dmlog/dirtylog/logtest"
)

// TestConformance runs the shared dirtylog.Log suite against a one-node
// etcdlog on an in-process etcd; every subtest gets its own log name. It
// is not parallel: the suite measures allocations (testing.AllocsPerRun).
func TestConformance(t *testing.T) {
	c := startCluster(t, 1)
	cli := c.client(t)
	logtest.Run(t, func(t *testing.T, o dirtylog.Options) dirtylog.Log {
		l, err := Open(testCtx(t), cli, Options{
			Name:       strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()),
			Node:       "node-a",
			RegionSize: o.RegionSize, DeviceSize: o.DeviceSize, Sync: o.Sync,
			LeaseTTL: 5 * time.Second,
		})
		require.NoError(t, err)
		return l
	})
}
