package etcdlog

import (
	"context"
	"fmt"
	"io"
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

// member is one in-process etcd member on loopback. Its clients and peers
// reach it through two proxies whose ports the OS chose when the cluster
// was built; the member itself listens on ports the OS chooses at each
// start, so no test ever guesses a free port.
type member struct {
	name       string
	dir        string
	client     *proxy
	peer       *proxy
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

// proxy forwards the TCP connections accepted on an OS-chosen loopback
// port to a member's current address. cut drops every connection at once,
// as a crashed member's would be, so the member's shutdown does not wait
// for its clients' streams (gRPC's graceful stop waits up to 5 s for them,
// the peer server 1 s).
type proxy struct {
	ln     net.Listener
	mu     sync.Mutex
	target string // "" while the member is down: connections are refused
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

func newProxy(t testing.TB) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	return p
}

func (p *proxy) url() url.URL { return url.URL{Scheme: "http", Host: p.ln.Addr().String()} }

func (p *proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		target := p.target
		p.mu.Unlock()
		if target == "" {
			c.Close()
			continue
		}
		p.wg.Add(1)
		go p.forward(c, target)
	}
}

// track registers c, or closes it and reports false if the target changed
// (the member went down) since the connection was accepted.
func (p *proxy) track(c net.Conn, target string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.target != target {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *proxy) forward(c net.Conn, target string) {
	defer p.wg.Done()
	if !p.track(c, target) {
		return
	}
	d, err := net.Dial("tcp", target)
	if err != nil || !p.track(d, target) {
		p.drop(c)
		return
	}
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) { _, _ = io.Copy(dst, src); done <- struct{}{} }
	go pipe(d, c)
	go pipe(c, d)
	<-done
	p.drop(c)
	p.drop(d)
	<-done
}

func (p *proxy) drop(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

// setTarget points the proxy at a member's address; "" cuts every
// connection and refuses new ones.
func (p *proxy) setTarget(addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.target = addr
	if addr == "" {
		for c := range p.conns {
			c.Close()
		}
	}
}

// close stops the proxy and waits for its goroutines.
func (p *proxy) close() {
	p.ln.Close()
	p.setTarget("")
	p.wg.Wait()
}

// startCluster starts n members and registers their shutdown with
// t.Cleanup. Clients made with c.client are closed first (cleanups run
// last-registered first), and a stopped member's connections are cut
// first, which keeps member shutdown fast.
func startCluster(t testing.TB, n int) *cluster {
	return startClusterWith(t, n, false)
}

func startClusterWith(t testing.TB, n int, fsync bool) *cluster {
	t.Helper()
	c := &cluster{t: t, fsync: fsync}
	var initial []string
	for i := range n {
		m := &member{name: fmt.Sprintf("m%d", i), dir: t.TempDir(), client: newProxy(t), peer: newProxy(t)}
		t.Cleanup(m.client.close)
		t.Cleanup(m.peer.close)
		u := m.peer.url()
		initial = append(initial, m.name+"="+u.String())
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
	osPort := url.URL{Scheme: "http", Host: "127.0.0.1:0"}
	cfg.ListenClientUrls = []url.URL{osPort}
	cfg.AdvertiseClientUrls = []url.URL{m.client.url()}
	cfg.ListenPeerUrls = []url.URL{osPort}
	cfg.AdvertisePeerUrls = []url.URL{m.peer.url()}
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
	m.peer.setTarget(e.Peers[0].Listener.Addr().String())
	m.client.setTarget(e.Clients[0].Addr().String())
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		m.client.setTarget("")
		m.peer.setTarget("")
		e.Close()
		return fmt.Errorf("start %s: not ready after 30 s", m.name)
	}
	m.e = e
	return nil
}

// stop kills member i (a no-op if it is down): its connections drop, as
// a crashed process's would, then the server stops.
func (c *cluster) stop(i int) {
	if m := c.members[i]; m.e != nil {
		m.client.setTarget("")
		m.peer.setTarget("")
		m.e.Server.HardStop()
		m.e.Close()
		m.e = nil
	}
}

// stopAll stops every member, in parallel.
func (c *cluster) stopAll() {
	var wg sync.WaitGroup
	for i := range c.members {
		wg.Add(1)
		go func() { defer wg.Done(); c.stop(i) }()
	}
	wg.Wait()
}

// restart starts member i again on its data directory, behind the same
// proxies.
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
		u := m.client.url()
		eps = append(eps, u.String())
	}
	return eps
}

// client returns a client of every member, closed by t.Cleanup before
// the members are.
func (c *cluster) client(t testing.TB) *clientv3.Client {
	t.Helper()
	return c.clientOf(t, c.endpoints())
}

// directClient returns a client that reaches the running members without
// the proxies (for benchmarks: no extra hop). It does not survive a
// member's restart.
func (c *cluster) directClient(t testing.TB) *clientv3.Client {
	t.Helper()
	var eps []string
	for _, m := range c.members {
		if m.e != nil {
			eps = append(eps, "http://"+m.e.Clients[0].Addr().String())
		}
	}
	return c.clientOf(t, eps)
}

func (c *cluster) clientOf(t testing.TB, endpoints []string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
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
