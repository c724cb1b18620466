package remote

import (
	"context"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dmlog/dmlog/dirtylog"
	"github.com/dmlog/dmlog/dirtylog/testdev"
)

func TestServerLimits(t *testing.T) {
	checkGoroutines(t)
	ts := startServer(t, ServerOptions{MaxRegions: 1000, MaxLogs: 2})
	ctx := context.Background()
	_, err := Dial(ctx, "unix", ts.path, ClientOptions{UUID: "big", DeviceSize: 1 << 40, Args: []string{"clustered-core", "2"}})
	require.ErrorIs(t, err, dirtylog.ErrBadArgs)
	require.Contains(t, err.Error(), "limit of 1000")
	a := ts.dial(t, coreOpts("l1", 1))
	defer a.Close()
	b := ts.dial(t, coreOpts("l2", 1))
	defer b.Close()
	_, err = Dial(ctx, "unix", ts.path, coreOpts("l3", 1))
	require.ErrorIs(t, err, dirtylog.ErrBadArgs)
	c := ts.dial(t, coreOpts("l2", 2)) // joining an existing log is fine
	require.NoError(t, c.Close())
}

func TestDiskFailureReachesTheClient(t *testing.T) {
	checkGoroutines(t)
	dev := testdev.NewFaulty(testdev.NewMemory(64 << 10))
	ts := startServer(t, ServerOptions{Open: func(string) (dirtylog.Device, error) { return dev, nil }})
	ctx := context.Background()
	c := ts.dial(t, ClientOptions{UUID: "fail", Node: 1, DeviceSize: tDevice, Args: []string{"clustered-disk", "ld", tRS, "nosync"}})
	defer c.Close()
	dev.Add(testdev.Rule{Label: "log write", Op: testdev.OpWrite})
	c.MarkRegion(1)
	err := c.Flush(ctx)
	require.ErrorIs(t, err, dirtylog.ErrLogFailed)
	var re *RemoteError
	require.ErrorAs(t, err, &re)
	require.EqualValues(t, errnoIO, re.Errno)
	require.Equal(t, "3 clustered-disk ld D", c.Status())
	dev.Clear()
	require.NoError(t, c.Flush(ctx), "the failed marks are retried")
}

// pipeListener hands net.Pipe ends to a server.
type pipeListener struct {
	ch     chan net.Conn
	once   sync.Once
	closed chan struct{}
}

func newPipeListener() *pipeListener {
	return &pipeListener{ch: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}
func (l *pipeListener) Close() error   { l.once.Do(func() { close(l.closed) }); return nil }
func (l *pipeListener) Addr() net.Addr { return &net.UnixAddr{Name: "", Net: "unix"} }

func (l *pipeListener) dial() net.Conn {
	a, b := net.Pipe()
	l.ch <- b
	return a
}

// FuzzServerConn feeds arbitrary bytes to a live server connection (frame
// reader, request dispatch, CTR and payload parsing): no panic, no hang,
// and the server still serves a well-behaved client afterwards.
func FuzzServerConn(f *testing.F) {
	var seed []byte
	add := func(t RequestType, p []byte) {
		seed, _ = AppendFrame(seed, Header{Version: Version, Seq: uint32(len(seed)), Type: t, LUID: 1, UUID: "fz"}, p)
	}
	add(RequestCtr, []byte("2048 clustered-core 8 nosync\x00"))
	add(RequestResume, nil)
	add(RequestMarkRegion, append(u64(1), u64(1<<63)...))
	add(RequestFlush, u64(2))
	add(RequestIsRemoteRecovering, u64(3))
	add(RequestSetRegionSync, append(u64(3), u64(0)...))
	add(RequestGetResyncWork, nil)
	add(RequestClearRegion, u64(1))
	add(RequestStatusTable, nil)
	add(RequestDtr, nil)
	f.Add(seed)
	var ctr []byte
	ctr, _ = AppendFrame(ctr, Header{Version: Version, Seq: 1, Type: RequestCtr, LUID: 1, UUID: "fz"}, []byte("99999999999999999 clustered-disk x 8 block_on_error sync"))
	f.Add(ctr)
	f.Add([]byte("DMUL\x03\x00\x00\x00"))

	f.Fuzz(func(t *testing.T, data []byte) {
		l := newPipeListener()
		s := NewServer(ServerOptions{FrameTimeout: 100 * time.Millisecond, WriteTimeout: time.Second, MaxRegions: 1 << 16,
			Open: func(string) (dirtylog.Device, error) { return testdev.NewMemory(64 << 10), nil }})
		done := make(chan error, 1)
		go func() { done <- s.Serve(l) }()
		defer func() {
			s.Close()
			<-done
		}()
		nc := l.dial()
		go io.Copy(io.Discard, nc) // drain replies
		nc.SetWriteDeadline(time.Now().Add(2 * time.Second))
		nc.Write(data)
		nc.Close()

		// A well-behaved peer is still served.
		good := l.dial()
		defer good.Close()
		good.SetDeadline(time.Now().Add(5 * time.Second))
		// (No CTR: the input may have made any log with any UUID.)
		b, _ := AppendFrame(nil, Header{Version: Version, Seq: 1, Type: RequestGetSyncCount, LUID: 9, UUID: "ok"}, nil)
		if _, err := good.Write(b); err != nil {
			t.Fatal(err)
		}
		h, p, err := NewFrameReader(good).ReadFrame()
		if err != nil {
			t.Fatalf("the server stopped serving: %v", err)
		}
		if h.Seq != 1 || h.Error != -errnoSRCH {
			t.Fatalf("reply: %+v %q", h, p)
		}
	})
}

// flakyListener fails Accept with EMFILE while fail is set, as a server
// out of file descriptors does.
type flakyListener struct {
	net.Listener
	fail  atomic.Bool
	fails atomic.Int32
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if l.fail.Load() {
		l.fails.Add(1)
		return nil, &net.OpError{Op: "accept", Net: "unix", Err: os.NewSyscallError("accept", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

// TestServeSurvivesTransientAcceptErrors: running out of file descriptors
// does not stop the server, and Close still stops a Serve that is backing
// off.
func TestServeSurvivesTransientAcceptErrors(t *testing.T) {
	checkGoroutines(t)
	p := sockPath(t)
	ul, err := ListenUnix(p)
	require.NoError(t, err)
	l := &flakyListener{Listener: ul}
	l.fail.Store(true)
	s := NewServer(ServerOptions{})
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	eventually(t, 10*time.Second, func() bool { return l.fails.Load() >= 3 }, "Serve stopped retrying")
	l.fail.Store(false)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, "unix", p, coreOpts("emfile", 1))
	require.NoError(t, err)
	require.NoError(t, c.Close())

	l.fail.Store(true)
	n := l.fails.Load()
	// Serve is inside the real Accept: one more connection gets it out.
	nc, err := net.Dial("unix", p)
	require.NoError(t, err)
	defer nc.Close()
	eventually(t, 10*time.Second, func() bool { return l.fails.Load() > n }, "Serve stopped retrying")
	require.NoError(t, s.Close())
	select {
	case err := <-done:
		require.ErrorIs(t, err, ErrServerClosed)
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after Close while backing off")
	}
}

// TestSlowDeviceHoldsUpOnlyItsLog: while the server opens a log device
// that hangs, other logs are constructed and served, and new connections
// are accepted; a second node of the slow log waits for it, then joins.
func TestSlowDeviceHoldsUpOnlyItsLog(t *testing.T) {
	checkGoroutines(t)
	release := make(chan struct{})
	opening := make(chan struct{}, 1)
	ts := startServer(t, ServerOptions{Open: func(name string) (dirtylog.Device, error) {
		if name == "slow" {
			opening <- struct{}{}
			<-release
		}
		return testdev.NewMemory(64 << 10), nil
	}})
	disk := func(node NodeID) ClientOptions {
		return ClientOptions{UUID: "slowlog", Node: node, DeviceSize: tDevice, Args: []string{"clustered-disk", "slow", tRS}}
	}
	type result struct {
		c   *Client
		err error
	}
	slow := make(chan result, 2)
	for n := range NodeID(2) {
		go func() {
			c, err := Dial(context.Background(), "unix", ts.path, disk(n+1))
			slow <- result{c, err}
		}()
	}
	<-opening
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, "unix", ts.path, coreOpts("fast", 1))
	require.NoError(t, err, "another log was held up by a hung device")
	c.MarkRegion(1)
	require.NoError(t, c.Flush(ctx))
	require.NoError(t, c.Close())
	select {
	case r := <-slow:
		t.Fatalf("a CTR of the slow log returned before its device opened: %v", r.err)
	default:
	}
	close(release)
	for range 2 {
		r := <-slow
		require.NoError(t, r.err)
		require.NoError(t, r.c.Close())
	}
}
