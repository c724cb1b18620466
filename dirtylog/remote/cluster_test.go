package remote

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/dmlog/dmlog/dirtylog"
	"github.com/dmlog/dmlog/dirtylog/logtest"
	"github.com/dmlog/dmlog/dirtylog/testdev"
)

// remoteCluster is a logtest.Cluster: n clients of one log on one server.
type remoteCluster struct {
	t     *testing.T
	ts    *testServer
	mu    sync.Mutex
	nodes []*Client
	base  ClientOptions
}

func (c *remoteCluster) Node(i int) dirtylog.Log {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i]
}

func (c *remoteCluster) Kill(i int) {
	c.mu.Lock()
	n := c.nodes[i]
	c.mu.Unlock()
	n.crash()
}

func (c *remoteCluster) Join() int {
	c.mu.Lock()
	o := c.base
	o.Node = NodeID(len(c.nodes) + 1)
	c.mu.Unlock()
	n := c.ts.dial(c.t, o)
	c.t.Cleanup(func() { n.Close() })
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nodes = append(c.nodes, n)
	return len(c.nodes) - 1
}

// Restart restarts the server on the same socket; the clients redial.
func (c *remoteCluster) Restart() { c.ts.restart(c.t) }

// memDevices is an opener of in-memory devices that survive server
// restarts, created on first use.
type memDevices struct {
	mu   sync.Mutex
	devs map[string]*testdev.Memory
}

func (m *memDevices) open(name string) (dirtylog.Device, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.devs == nil {
		m.devs = map[string]*testdev.Memory{}
	}
	d := m.devs[name]
	if d == nil {
		d = testdev.NewMemory(64 << 10)
		m.devs[name] = d
	}
	return d, nil
}

func (m *memDevices) get(name string) *testdev.Memory {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.devs[name]
}

func clusterFactory(disk bool, integrated bool) logtest.ClusterFactory {
	return func(t *testing.T, o logtest.ClusterOptions) logtest.Cluster {
		devs := &memDevices{}
		ts := startServer(t, ServerOptions{DeadAfter: o.DeadAfter, Open: devs.open})
		rs := fmt.Sprint(o.RegionSize / dirtylog.SectorSize)
		args := []string{"clustered-core", rs}
		if disk {
			args = []string{"clustered-disk", "logdev", rs}
		}
		if s := o.Sync.String(); s != "" {
			args = append(args, s)
		}
		c := &remoteCluster{t: t, ts: ts, base: ClientOptions{
			UUID: "cluster-" + t.Name(), DeviceSize: o.DeviceSize, Args: args,
			IntegratedFlush: integrated, RetryTimeout: 10 * time.Second,
			RedialMin: time.Millisecond, RedialMax: 50 * time.Millisecond,
		}}
		for range o.Nodes {
			c.Join()
		}
		return c
	}
}

func TestClusterCore(t *testing.T) {
	checkGoroutines(t)
	logtest.RunCluster(t, clusterFactory(false, false))
}

func TestClusterDisk(t *testing.T) {
	checkGoroutines(t)
	logtest.RunCluster(t, clusterFactory(true, true))
}
