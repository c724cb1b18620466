package remote

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dmlog/dmlog/dirtylog"
)

// testServer is a server on a Unix socket in a temp dir.
type testServer struct {
	srv   *Server
	path  string
	opts  ServerOptions
	done  chan error
	trace func(h *Header, p []byte)
	hook  func(*Server) // sets test hooks on each new Server, before Serve
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("DMLOG_VERBOSE") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return nil
}

var sockSeq atomic.Uint64

// sockPath returns a short socket path (Unix socket paths are limited to
// ~108 bytes, and t.TempDir() can be long).
func sockPath(t testing.TB) string {
	dir, err := os.MkdirTemp("", "dmlr")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, fmt.Sprintf("s%d", sockSeq.Add(1)))
}

func startServer(t testing.TB, o ServerOptions) *testServer {
	return startTracedServer(t, o, nil)
}

// detachEvent is one disconnection the server saw: the log, the node and
// whether a death timer was armed.
type detachEvent struct {
	uuid  string
	node  NodeID
	armed bool
}

// fakeClock replaces the server's clock: a death timer armed on it fires
// only when the test advances the clock past it (or calls fire), and the
// restart grace ends only when the clock passes it, so a death rule is
// checked without waiting for (or racing) a wall-clock timeout.
type fakeClock struct {
	mu     sync.Mutex
	t      time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	c       *fakeClock
	at      time.Time
	f       func()
	stopped bool
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := !t.stopped
	t.stopped = true
	return was
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) afterFunc(d time.Duration, f func()) stopper {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, at: c.t.Add(d), f: f}
	c.timers = append(c.timers, t)
	return t
}

// armed returns how many timers were ever armed.
func (c *fakeClock) armed() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// advance moves the clock on by d and runs, on the caller's goroutine,
// every timer that is then due and not stopped. It returns how many ran.
func (c *fakeClock) advance(d time.Duration) int {
	c.mu.Lock()
	c.t = c.t.Add(d)
	return c.runLocked(func(t *fakeTimer) bool { return !t.at.After(c.t) })
}

// fire runs every timer armed and not stopped, due or not.
func (c *fakeClock) fire() int {
	c.mu.Lock()
	return c.runLocked(func(*fakeTimer) bool { return true })
}

// runLocked runs the unstopped timers that due selects; it unlocks c.mu
// before running them.
func (c *fakeClock) runLocked(due func(*fakeTimer) bool) int {
	var run []func()
	for _, t := range c.timers {
		if !t.stopped && due(t) {
			t.stopped = true
			run = append(run, t.f)
		}
	}
	c.mu.Unlock()
	for _, f := range run {
		f()
	}
	return len(run)
}

// startClockedServer starts a server whose death timers run on a fake
// clock and whose disconnections are reported on the returned channel.
func startClockedServer(t testing.TB, o ServerOptions) (*testServer, *fakeClock, <-chan detachEvent) {
	t.Helper()
	if o.Logger == nil {
		o.Logger = testLogger(t)
	}
	clk := &fakeClock{t: time.Unix(1e9, 0)}
	events := make(chan detachEvent, 64)
	ts := &testServer{path: sockPath(t), opts: o, hook: func(s *Server) {
		s.afterFunc = clk.afterFunc
		s.now = clk.now
		s.detached = func(uuid string, n NodeID, armed bool) {
			select {
			case events <- detachEvent{uuid, n, armed}:
			default: // a test that stopped listening
			}
		}
	}}
	ts.start(t)
	t.Cleanup(func() { ts.stop() })
	return ts, clk, events
}

// waitDisconnected waits (bounded) until the server holds no connection
// for node n of log uuid: it saw the node's connection go.
func waitDisconnected(t testing.TB, ts *testServer, uuid string, n NodeID) {
	t.Helper()
	eventually(t, 10*time.Second, func() bool {
		ts.srv.mu.Lock()
		hl := ts.srv.logs[uuid]
		ts.srv.mu.Unlock()
		if hl == nil {
			return true
		}
		hl.mu.Lock()
		defer hl.mu.Unlock()
		m := hl.members[n]
		return m == nil || m.conn == nil
	}, "the server never saw node %d of log %s disconnect", n, uuid)
}

// waitDetach waits (bounded) for the server to handle the disconnection
// of node n of log uuid.
func waitDetach(t testing.TB, events <-chan detachEvent, uuid string, n NodeID) detachEvent {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case e := <-events:
			if e.uuid == uuid && e.node == n {
				return e
			}
		case <-deadline:
			t.Fatalf("the server never saw node %d of log %s disconnect", n, uuid)
		}
	}
}

func startTracedServer(t testing.TB, o ServerOptions, trace func(h *Header, p []byte)) *testServer {
	t.Helper()
	if o.Logger == nil {
		o.Logger = testLogger(t)
	}
	ts := &testServer{path: sockPath(t), opts: o, trace: trace}
	ts.start(t)
	t.Cleanup(func() { ts.stop() })
	return ts
}

func (ts *testServer) start(t testing.TB) {
	l, err := ListenUnix(ts.path)
	require.NoError(t, err)
	ts.srv = NewServer(ts.opts)
	ts.srv.trace = ts.trace
	if ts.hook != nil {
		ts.hook(ts.srv)
	}
	ts.done = make(chan error, 1)
	go func(s *Server) { ts.done <- s.Serve(l) }(ts.srv)
}

// stop closes the server (idempotent) and waits for Serve to return.
func (ts *testServer) stop() {
	if ts.srv == nil {
		return
	}
	ts.srv.Close()
	<-ts.done
	ts.srv = nil
}

func (ts *testServer) restart(t testing.TB) {
	ts.stop()
	ts.start(t)
}

func coreArgs(o dirtylog.Options) []string {
	a := []string{"clustered-core", fmt.Sprint(o.RegionSize / dirtylog.SectorSize)}
	if s := o.Sync.String(); s != "" {
		a = append(a, s)
	}
	return a
}

func (ts *testServer) dial(t testing.TB, o ClientOptions) *Client {
	t.Helper()
	if o.RetryTimeout == 0 {
		o.RetryTimeout = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, "unix", ts.path, o)
	require.NoError(t, err)
	return c
}

// checkGoroutines fails t if goroutines of this package outlive the test.
func checkGoroutines(t *testing.T) {
	t.Helper()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			var leaked []string
			for _, g := range strings.Split(string(buf), "\n\n") {
				if strings.Contains(g, "dirtylog/remote.") && !strings.Contains(g, "checkGoroutines") &&
					!strings.Contains(g, "testing.tRunner") {
					leaked = append(leaked, g)
				}
			}
			if len(leaked) == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("%d goroutines leaked:\n%s", len(leaked), strings.Join(leaked, "\n\n"))
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

func eventually(t testing.TB, d time.Duration, cond func() bool, msg string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out: "+msg, args...)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// rawConn speaks frames directly, for tests of bad input.
type rawConn struct {
	t  testing.TB
	nc net.Conn
	fr *FrameReader
}

func dialRaw(t testing.TB, path string) *rawConn {
	t.Helper()
	nc, err := net.Dial("unix", path)
	require.NoError(t, err)
	t.Cleanup(func() { nc.Close() })
	return &rawConn{t: t, nc: nc, fr: NewFrameReader(nc)}
}

func (rc *rawConn) send(h Header, p []byte) {
	rc.t.Helper()
	if h.Version == 0 {
		h.Version = Version
	}
	b, err := AppendFrame(nil, h, p)
	require.NoError(rc.t, err)
	_, err = rc.nc.Write(b)
	require.NoError(rc.t, err)
}

func (rc *rawConn) recv() (Header, []byte, error) {
	rc.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	return rc.fr.ReadFrame()
}

// call sends one request and returns its reply.
func (rc *rawConn) call(h Header, p []byte) (Header, []byte) {
	rc.t.Helper()
	rc.send(h, p)
	rh, rp, err := rc.recv()
	require.NoError(rc.t, err)
	require.Equal(rc.t, h.Seq, rh.Seq)
	return rh, append([]byte(nil), rp...)
}

func u64(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }
