package etcdlog

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

// member is one in-process etcd member on loopback.
type member struct {
	name       string
	dir        string
	client     url.URL
	peer       url.URL
	e          *embed.Etcd
	clusterCfg string
}

// cluster is 1-3 in-process etcd members with short timers (10 ms tick,
// 100 ms election for one member, 50/500 ms for three; no fsync), for
// tests and benchmarks.
type cluster struct {
	t       testing.TB
	members []*member
	fsync   bool // benchmarks: fsync the WAL, as a deployment does
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startCluster starts n members and registers their shutdown with
// t.Cleanup. Clients made with c.client are closed first (cleanups run
// last-registered first), which keeps member shutdown fast.
func startCluster(t testing.TB, n int) *cluster {
	return startClusterWith(t, n, false)
}

func startClusterWith(t testing.TB, n int, fsync bool) *cluster {
	t.Helper()
	c := &cluster{t: t, fsync: fsync}
	var initial []string
	for i := range n {
		m := &member{name: fmt.Sprintf("m%d", i), dir: t.TempDir()}
		m.client = url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
		m.peer = url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
		initial = append(initial, m.name+"="+m.peer.String())
		c.members = append(c.members, m)
	}
	for _, m := range c.members {
		m.clusterCfg = strings.Join(initial, ",")
	}
	t.Cleanup(c.stopAll)
	errc := make(chan error, n)
	for i := range c.members {
		go func() { errc <- c.start(i, true) }()
	}
	for range n {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func (c *cluster) start(i int, fresh bool) error {
	m := c.members[i]
	cfg := embed.NewConfig()
	cfg.Name = m.name
	cfg.Dir = m.dir
	cfg.TickMs, cfg.ElectionMs = 10, 100
	if len(c.members) > 1 {
		// Slower timers keep a loaded CI machine from spurious elections.
		cfg.TickMs, cfg.ElectionMs = 50, 500
	}
	cfg.UnsafeNoFsync = !c.fsync
	cfg.ListenClientUrls = []url.URL{m.client}
	cfg.AdvertiseClientUrls = []url.URL{m.client}
	cfg.ListenPeerUrls = []url.URL{m.peer}
	cfg.AdvertisePeerUrls = []url.URL{m.peer}
	cfg.InitialCluster = m.clusterCfg
	cfg.InitialClusterToken = "etcdlog-test"
	if !fresh {
		cfg.ClusterState = embed.ClusterStateFlagExisting
	}
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return fmt.Errorf("start %s: %w", m.name, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		e.Close()
		return fmt.Errorf("start %s: not ready after 30 s", m.name)
	}
	m.e = e
	return nil
}

// stop closes member i (a no-op if it is down).
func (c *cluster) stop(i int) {
	if m := c.members[i]; m.e != nil {
		// Stop the server first: gRPC's graceful stop would otherwise wait
		// up to 5 s for the clients' watch and keepalive streams.
		m.e.Server.HardStop()
		m.e.Close()
		m.e = nil
	}
}

// stopAll stops every member, in parallel (each takes about a second).
func (c *cluster) stopAll() {
	var wg sync.WaitGroup
	for i := range c.members {
		wg.Add(1)
		go func() { defer wg.Done(); c.stop(i) }()
	}
	wg.Wait()
}

// restart starts member i again on its data directory and ports.
func (c *cluster) restart(i int) {
	c.t.Helper()
	if err := c.start(i, false); err != nil {
		c.t.Fatal(err)
	}
}

// endpoints returns the client URLs of every member.
func (c *cluster) endpoints() []string {
	var eps []string
	for _, m := range c.members {
		eps = append(eps, m.client.String())
	}
	return eps
}

// client returns a client of every member, closed by t.Cleanup before
// the members are.
func (c *cluster) client(t testing.TB) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   c.endpoints(),
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
		// Reconnect quickly after a member restarts (gRPC's default
		// backoff grows to seconds, longer than the tests' leases).
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 20 * time.Millisecond, Multiplier: 1.6, MaxDelay: 200 * time.Millisecond},
			MinConnectTimeout: time.Second,
		})},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// leader returns the index of the member that is the raft leader.
func (c *cluster) leader() int {
	for i, m := range c.members {
		if m.e != nil && m.e.Server.Leader() == m.e.Server.MemberID() {
			return i
		}
	}
	return -1
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}
