package remote

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dmlog/dmlog/dirtylog"
	"github.com/dmlog/dmlog/dirtylog/logtest"
)

const (
	tRegion = 64 << 10
	tDevice = 256 * tRegion
	tRS     = "128" // sectors
)

func coreOpts(uuid string, node NodeID, extra ...string) ClientOptions {
	return ClientOptions{UUID: uuid, Node: node, DeviceSize: tDevice,
		Args: append([]string{"clustered-core", tRS}, extra...)}
}

func TestSocketIsPrivate(t *testing.T) {
	checkGoroutines(t)
	ts := startServer(t, ServerOptions{})
	fi, err := os.Stat(ts.path)
	require.NoError(t, err)
	require.Equal(t, os.ModeSocket|0o600, fi.Mode())
	// Nothing else is left beside it (ListenUnix binds in a private
	// temporary directory, then renames the socket into place).
	ents, err := os.ReadDir(filepath.Dir(ts.path))
	require.NoError(t, err)
	require.Len(t, ents, 1)
	require.Equal(t, filepath.Base(ts.path), ents[0].Name())

	// Serve restricts a socket made by plain net.Listen too.
	p := sockPath(t)
	l, err := net.Listen("unix", p)
	require.NoError(t, err)
	s := NewServer(ServerOptions{})
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	eventually(t, 5*time.Second, func() bool {
		fi, err := os.Stat(p)
		return err == nil && fi.Mode().Perm() == 0o600
	}, "socket not restricted to 0600")
	require.NoError(t, s.Close())
	require.ErrorIs(t, <-done, ErrServerClosed)
	require.ErrorIs(t, s.Serve(l), ErrServerClosed)
}

func TestRequestsOverTheWire(t *testing.T) {
	checkGoroutines(t)
	ts := startServer(t, ServerOptions{})
	rc := dialRaw(t, ts.path)
	h := func(seq uint32, typ RequestType) Header {
		return Header{Seq: seq, Type: typ, LUID: 5, UUID: "wire"}
	}
	// Before CTR: the node is unknown on this connection.
	rh, _ := rc.call(h(1, RequestIsClean), u64(0))
	require.EqualValues(t, -errnoSRCH, rh.Error)

	rh, p := rc.call(h(2, RequestCtr), []byte(fmt.Sprintf("%d clustered-core %s nosync\x00", tDevice/512, tRS)))
	require.Zero(t, rh.Error, string(p))
	require.Empty(t, p)
	rh, p = rc.call(h(3, RequestGetRegionSize), nil)
	require.Zero(t, rh.Error)
	require.Equal(t, u64(128), p)
	rh, _ = rc.call(h(4, RequestResume), nil)
	require.Zero(t, rh.Error)

	// Pipelined: MARK, FLUSH, IS_CLEAN in one write; replies in order.
	var b []byte
	b, _ = AppendFrame(b, Header{Version: Version, Seq: 10, Type: RequestMarkRegion, LUID: 5, UUID: "wire"}, append(u64(3), u64(4)...))
	b, _ = AppendFrame(b, Header{Version: Version, Seq: 11, Type: RequestFlush, LUID: 5, UUID: "wire"}, nil)
	b, _ = AppendFrame(b, Header{Version: Version, Seq: 12, Type: RequestIsClean, LUID: 5, UUID: "wire"}, u64(4))
	_, err := rc.nc.Write(b)
	require.NoError(t, err)
	for seq := uint32(10); seq <= 12; seq++ {
		rh, p, err := rc.recv()
		require.NoError(t, err)
		require.Equal(t, seq, rh.Seq)
		require.Zero(t, rh.Error)
		require.EqualValues(t, 3, rh.Version)
		require.Equal(t, "wire", rh.UUID)
		if seq == 12 {
			require.Equal(t, u64(0), p, "region 4 must read dirty")
		}
	}
	rh, p = rc.call(h(13, RequestGetSyncCount), nil)
	require.Equal(t, u64(256), p)
	rh, p = rc.call(h(14, RequestGetResyncWork), nil)
	require.Equal(t, append(u64(0), u64(0)...), p)
	rh, _ = rc.call(h(15, RequestSetRegionSync), append(u64(9), u64(0)...))
	require.Zero(t, rh.Error)
	rh, p = rc.call(h(16, RequestIsRemoteRecovering), u64(9))
	require.Equal(t, append(u64(1), u64(9)...), p)
	rh, p = rc.call(h(17, RequestGetResyncWork), nil)
	require.Equal(t, append(u64(1), u64(9)...), p)
	rh, p = rc.call(h(18, RequestStatusInfo), nil)
	require.Equal(t, "1 clustered-core", string(p))
	rh, p = rc.call(h(19, RequestStatusTable), nil)
	require.Equal(t, "clustered-core 128 nosync ", string(p))
	rh, _ = rc.call(h(20, RequestPresuspend), nil)
	require.Zero(t, rh.Error)
	rh, _ = rc.call(h(21, RequestPostsuspend), nil)
	require.Zero(t, rh.Error)

	// Bad payloads are answered with errors; the connection goes on.
	rh, p = rc.call(h(30, RequestIsClean), []byte{1, 2, 3})
	require.EqualValues(t, -errnoPROTO, rh.Error)
	require.Contains(t, string(p), "8-byte region")
	rh, _ = rc.call(h(31, RequestIsClean), u64(256))
	require.EqualValues(t, -errnoRANGE, rh.Error)
	rh, _ = rc.call(h(32, RequestMarkRegion), make([]byte, 12))
	require.EqualValues(t, -errnoPROTO, rh.Error)
	rh, _ = rc.call(h(33, RequestSetRegionSync), make([]byte, 8))
	require.EqualValues(t, -errnoPROTO, rh.Error)
	rh, _ = rc.call(h(34, RequestMarkRegion), u64(1<<40)) // out of range: ignored
	require.Zero(t, rh.Error)

	// DTR: the last node destroys the log.
	rh, _ = rc.call(h(40, RequestDtr), nil)
	require.Zero(t, rh.Error)
	require.Empty(t, ts.srv.Logs())
	rh, _ = rc.call(h(41, RequestIsClean), u64(0))
	require.EqualValues(t, -errnoSRCH, rh.Error)
}

func TestCtrErrors(t *testing.T) {
	checkGoroutines(t)
	ts := startServer(t, ServerOptions{})
	ctx := context.Background()
	dial := func(o ClientOptions) error {
		c, err := Dial(ctx, "unix", ts.path, o)
		if err == nil {
			c.Close()
		}
		return err
	}
	require.ErrorIs(t, dial(coreOpts("", 1)), dirtylog.ErrBadArgs)
	require.ErrorIs(t, dial(coreOpts(strings.Repeat("u", 129), 1)), ErrUUIDTooLong)
	require.NoError(t, dial(coreOpts(strings.Repeat("u", 128), 1)))
	require.ErrorIs(t, dial(ClientOptions{UUID: "x", DeviceSize: tDevice, Args: []string{"clustered-core", "1000"}}), dirtylog.ErrBadArgs)
	err := dial(ClientOptions{UUID: "x", DeviceSize: tDevice, Args: []string{"clustered-core", "1000"}})
	require.Contains(t, err.Error(), "invalid region size 1000")
	require.ErrorIs(t, dial(ClientOptions{UUID: "x", DeviceSize: tDevice, Args: []string{"mirror", "1024"}}), dirtylog.ErrBadArgs)
	require.ErrorIs(t, dial(ClientOptions{UUID: "x", DeviceSize: tDevice, Args: []string{"clustered-core", "128", "Sync"}}), dirtylog.ErrBadArgs)
	require.ErrorIs(t, dial(ClientOptions{UUID: "x", DeviceSize: tDevice, Args: []string{"clustered-disk", "d", "128"}}), dirtylog.ErrBadArgs,
		"a server without an opener refuses disk logs")

	// A second node must construct the log the same way.
	a := ts.dial(t, coreOpts("same", 1))
	defer a.Close()
	err = dial(coreOpts("same", 2, "nosync"))
	require.ErrorIs(t, err, dirtylog.ErrBadArgs)
	require.Contains(t, err.Error(), "exists with CTR")
	require.ErrorIs(t, dial(ClientOptions{UUID: "x", DeviceSize: tDevice, Args: coreOpts("", 0).Args}), nil)
	err = dial(ClientOptions{UUID: "x", Args: coreOpts("", 0).Args})
	require.ErrorIs(t, err, dirtylog.ErrBadArgs)
	require.ErrorContains(t, err, "ClientOptions.DeviceSize is 0 bytes", "a missing device size is named as such")
	_, err = Dial(ctx, "tcp", "127.0.0.1:1", coreOpts("x", 1))
	require.ErrorIs(t, err, ErrInsecure)
}

// TestOneLogPerDevice: a second log (another UUID) constructed on a device
// that already holds a log is refused; the first one is untouched.
func TestOneLogPerDevice(t *testing.T) {
	checkGoroutines(t)
	devs := &memDevices{}
	ts := startServer(t, ServerOptions{Open: devs.open})
	disk := func(uuid, dev string) ClientOptions {
		return ClientOptions{UUID: uuid, Node: 1, DeviceSize: tDevice, Args: []string{"clustered-disk", dev, tRS}}
	}
	a := ts.dial(t, disk("first", "dev0"))
	defer a.Close()
	a.MarkRegion(7)
	require.NoError(t, a.Flush(context.Background()))
	_, err := Dial(context.Background(), "unix", ts.path, disk("second", "dev0"))
	require.ErrorIs(t, err, dirtylog.ErrBadArgs)
	require.Contains(t, err.Error(), "already holds log first")
	b := ts.dial(t, disk("second", "dev1"))
	require.NoError(t, b.Close())
	clean, err := a.IsClean(context.Background(), 7)
	require.NoError(t, err)
	require.False(t, clean)
}

func TestBadInputDoesNotDisturbOthers(t *testing.T) {
	checkGoroutines(t)
	ts := startServer(t, ServerOptions{FrameTimeout: 200 * time.Millisecond})
	ctx := context.Background()
	good := ts.dial(t, coreOpts("good", 1, "nosync"))
	defer good.Close()
	var stop atomic.Bool
	var wg sync.WaitGroup
	var goodErr atomic.Value
	wg.Add(1)
	go func() { // a well-behaved node working throughout
		defer wg.Done()
		for i := 0; !stop.Load(); i++ {
			r := dirtylog.Region(i % 256)
			good.MarkRegion(r)
			if err := good.Flush(ctx); err != nil {
				goodErr.Store(err)
				return
			}
			good.ClearRegion(r)
		}
	}()

	hdr := Header{Version: Version, Seq: 1, Type: RequestResume, UUID: "bad"}
	frame := func(h Header, p []byte) []byte { b, _ := AppendFrame(nil, h, p); return b }
	expectClosed := func(rc *rawConn) {
		t.Helper()
		rc.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := io.ReadAll(rc.nc)
		require.NoError(t, err) // EOF: the server hung up
	}

	t.Run("BadMagic", func(t *testing.T) {
		rc := dialRaw(t, ts.path)
		b := frame(hdr, nil)
		b[1] = 'X'
		rc.nc.Write(b)
		expectClosed(rc)
	})
	t.Run("Oversized", func(t *testing.T) {
		rc := dialRaw(t, ts.path)
		b := frame(hdr, nil)
		binary.LittleEndian.PutUint32(b[20:], 1<<30)
		rc.nc.Write(b)
		rh, p, err := rc.recv()
		require.NoError(t, err)
		require.EqualValues(t, -errnoMSGSIZE, rh.Error, string(p))
		expectClosed(rc)
	})
	t.Run("UnknownTypeThenGoodRequest", func(t *testing.T) {
		rc := dialRaw(t, ts.path)
		b := frame(hdr, []byte("payload"))
		binary.LittleEndian.PutUint32(b[12:], 99)
		rc.nc.Write(b)
		rh, p, err := rc.recv()
		require.ErrorIs(t, err, ErrUnknownRequest, "the reply echoes the unknown type")
		require.EqualValues(t, -errnoINVAL, rh.Error)
		require.Contains(t, string(p), "unknown request")
		rh, _ = rc.call(Header{Seq: 2, Type: RequestGetSyncCount, UUID: "bad"}, nil)
		require.EqualValues(t, -errnoSRCH, rh.Error, "the connection goes on after an unknown type")
	})
	t.Run("UUIDTooLong", func(t *testing.T) {
		rc := dialRaw(t, ts.path)
		b := frame(hdr, nil)
		copy(b[32:], strings.Repeat("u", 129))
		rc.nc.Write(b)
		rh, p, err := rc.recv()
		require.NoError(t, err)
		require.EqualValues(t, -errnoINVAL, rh.Error)
		require.Contains(t, string(p), "UUID too long")
		require.Empty(t, rh.UUID)
	})
	t.Run("OtherVersion", func(t *testing.T) {
		rc := dialRaw(t, ts.path)
		rc.send(Header{Version: 2, Seq: 77, Type: RequestCtr, UUID: "bad"}, []byte("1 clustered-core 2"))
		rh, p, err := rc.recv()
		require.NoError(t, err)
		require.EqualValues(t, 77, rh.Seq)
		require.EqualValues(t, Version, rh.Version)
		require.EqualValues(t, -errnoPROTONOSUPPORT, rh.Error)
		require.Contains(t, string(p), "version 2")
		expectClosed(rc)
	})
	t.Run("StallMidFrame", func(t *testing.T) {
		rc := dialRaw(t, ts.path)
		rc.nc.Write(frame(hdr, nil)[:50])
		start := time.Now()
		expectClosed(rc)
		require.Less(t, time.Since(start), 5*time.Second)
	})
	t.Run("StallMidPayload", func(t *testing.T) {
		rc := dialRaw(t, ts.path)
		rc.nc.Write(frame(Header{Version: Version, Seq: 1, Type: RequestMarkRegion, UUID: "bad"}, make([]byte, 800))[:HeaderSize+100])
		start := time.Now()
		expectClosed(rc)
		require.Less(t, time.Since(start), 5*time.Second)
	})
	t.Run("IdleIsNotStalled", func(t *testing.T) {
		rc := dialRaw(t, ts.path)
		time.Sleep(400 * time.Millisecond) // twice the frame timeout
		rh, _ := rc.call(Header{Seq: 3, Type: RequestGetSyncCount, UUID: "bad"}, nil)
		require.EqualValues(t, -errnoSRCH, rh.Error)
	})
	t.Run("DisconnectMidRequest", func(t *testing.T) {
		rc := dialRaw(t, ts.path)
		rc.nc.Write(frame(Header{Version: Version, Seq: 1, Type: RequestMarkRegion, UUID: "bad"}, make([]byte, 800))[:HeaderSize+100])
		rc.nc.Close()
	})
	t.Run("Garbage", func(t *testing.T) {
		rc := dialRaw(t, ts.path)
		rc.nc.Write([]byte(strings.Repeat("GET / HTTP/1.1\r\n", 20)))
		expectClosed(rc)
	})
	stop.Store(true)
	wg.Wait()
	if err := goodErr.Load(); err != nil {
		t.Fatalf("the good node failed: %v", err)
	}
	require.NoError(t, good.Flush(ctx))
	require.Equal(t, "1 clustered-core", good.Status())
}

// serveFrames accepts connections on l and hands every frame read to
// handle, until l is closed. The returned stop closes l and waits for
// every goroutine it started (connections end when their peer closes).
func serveFrames(l net.Listener, handle func(nc net.Conn, h Header, p []byte)) (stop func()) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer nc.Close()
				fr := NewFrameReader(nc)
				for {
					h, p, err := fr.ReadFrame()
					if err != nil {
						return
					}
					handle(nc, h, p)
				}
			}()
		}
	}()
	return func() { l.Close(); wg.Wait() }
}

// fakeServer answers CTR, GET_REGION_SIZE and RESUME, then hands every
// other frame to handle.
func fakeServer(t *testing.T, handle func(nc net.Conn, h Header, p []byte)) string {
	p := sockPath(t)
	l, err := net.Listen("unix", p)
	require.NoError(t, err)
	stop := serveFrames(l, func(nc net.Conn, h Header, p []byte) {
		switch h.Type {
		case RequestCtr, RequestResume:
			b, _ := AppendFrame(nil, Header{Version: Version, Seq: h.Seq, Type: h.Type, UUID: h.UUID}, nil)
			nc.Write(b)
		case RequestGetRegionSize:
			b, _ := AppendFrame(nil, Header{Version: Version, Seq: h.Seq, Type: h.Type, UUID: h.UUID}, u64(128))
			nc.Write(b)
		default:
			handle(nc, h, p)
		}
	})
	t.Cleanup(stop)
	return p
}

func TestClientHonoursContextAndIgnoresLateReplies(t *testing.T) {
	checkGoroutines(t)
	var mu sync.Mutex
	var held *Header
	path := fakeServer(t, func(nc net.Conn, h Header, p []byte) {
		r := binary.LittleEndian.Uint64(p)
		mu.Lock()
		defer mu.Unlock()
		if r == 1 { // stall this one
			held = &h
			return
		}
		if held != nil { // answer the stalled request late, with "clean"
			b, _ := AppendFrame(nil, Header{Version: Version, Seq: held.Seq, Type: held.Type, UUID: h.UUID}, u64(1))
			nc.Write(b)
			held = nil
		}
		b, _ := AppendFrame(nil, Header{Version: Version, Seq: h.Seq, Type: h.Type, UUID: h.UUID}, u64(0))
		nc.Write(b)
	})
	c, err := Dial(context.Background(), "unix", path, coreOpts("ctx", 1))
	require.NoError(t, err)
	defer c.shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = c.IsClean(ctx, 1)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Less(t, time.Since(start), 5*time.Second)
	for range 3 {
		clean, err := c.IsClean(context.Background(), 2)
		require.NoError(t, err)
		require.False(t, clean, "a late reply was delivered to another request")
	}
}

func TestClientRefusesOtherVersion(t *testing.T) {
	checkGoroutines(t)
	p := sockPath(t)
	l, err := net.Listen("unix", p)
	require.NoError(t, err)
	defer l.Close()
	go func() {
		nc, err := l.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		h, _, err := NewFrameReader(nc).ReadFrame()
		if err != nil {
			return
		}
		b := appendHeader(nil, &Header{Version: 4, Seq: h.Seq, Type: h.Type, UUID: h.UUID})
		nc.Write(b)
		io.Copy(io.Discard, nc)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = Dial(ctx, "unix", p, coreOpts("v", 1))
	require.ErrorIs(t, err, ErrVersion)
}

// TestExpiredContextLeavesTheConnection: a call made with a context that
// has already ended, or ends within a microsecond, fails with the
// context's error and must not break the connection the client's other
// callers share (no redial, no replay).
func TestExpiredContextLeavesTheConnection(t *testing.T) {
	checkGoroutines(t)
	ts := startServer(t, ServerOptions{})
	c := ts.dial(t, coreOpts("expired", 1))
	defer c.Close()
	c.mu.Lock()
	cc := c.cc
	c.mu.Unlock()
	done, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := c.IsClean(done, 1)
	require.ErrorIs(t, err, context.Canceled)
	for range 50 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Microsecond)
		c.MarkRegion(2)
		_ = c.Flush(ctx)
		cancel()
	}
	require.NoError(t, c.Flush(context.Background()))
	c.mu.Lock()
	same := c.cc == cc
	c.mu.Unlock()
	require.True(t, same, "an expired context broke the shared connection")
	require.False(t, cc.failed())
}

// TestUnresponsiveServerFailsFlush: a server that accepts requests but
// never answers (hung, or cut off without a reset) makes Flush fail with
// ErrUnreachable after about Timeout+RetryTimeout, even without a context
// deadline, and the marks stay pending.
func TestUnresponsiveServerFailsFlush(t *testing.T) {
	checkGoroutines(t)
	path := fakeServer(t, func(net.Conn, Header, []byte) {}) // swallows everything
	o := coreOpts("hung", 1)
	o.Timeout, o.RetryTimeout = 200*time.Millisecond, 300*time.Millisecond
	c, err := Dial(context.Background(), "unix", path, o)
	require.NoError(t, err)
	defer c.shutdown()
	c.MarkRegion(3)
	start := time.Now()
	err = c.Flush(context.Background())
	require.ErrorIs(t, err, ErrUnreachable)
	require.Less(t, time.Since(start), 10*time.Second)
	require.True(t, c.marks.has(3), "a failed flush must keep its marks pending")
}

// TestRedialToOtherVersionSaysSo: the server is replaced by one speaking
// another protocol version. The client's calls fail (no hang) with
// ErrUnreachable wrapping ErrVersion, so an operator sees why.
func TestRedialToOtherVersionSaysSo(t *testing.T) {
	checkGoroutines(t)
	ts := startServer(t, ServerOptions{})
	o := coreOpts("v4", 1)
	o.RetryTimeout, o.RedialMax = 200*time.Millisecond, 20*time.Millisecond
	c := ts.dial(t, o)
	ts.stop()

	l, err := net.Listen("unix", ts.path)
	require.NoError(t, err)
	stop := serveFrames(l, func(nc net.Conn, h Header, _ []byte) {
		nc.Write(appendHeader(nil, &Header{Version: 4, Seq: h.Seq, Type: h.Type, UUID: h.UUID}))
	})
	defer func() {
		c.Close() // fails (nobody speaks v3), but stops the redialling
		stop()
	}()
	eventually(t, 10*time.Second, func() bool {
		_, err := c.IsClean(context.Background(), 0)
		require.ErrorIs(t, err, ErrUnreachable)
		return errors.Is(err, ErrVersion)
	}, "the client never said the server speaks another version")
}

// TestBatching checks what goes on the wire for each flush.
func TestBatching(t *testing.T) {
	checkGoroutines(t)
	var mu sync.Mutex
	var seen []string
	var ctr string
	ts := startTracedServer(t, ServerOptions{}, func(h *Header, p []byte) {
		mu.Lock()
		defer mu.Unlock()
		if h.Type == RequestCtr {
			ctr = string(p)
		}
		seen = append(seen, fmt.Sprintf("%v/%d", h.Type, h.DataSize/8))
	})
	take := func() []string {
		mu.Lock()
		defer mu.Unlock()
		s := seen
		seen = nil
		return s
	}
	ctx := context.Background()
	for _, integrated := range []bool{false, true} {
		t.Run(fmt.Sprint("integrated=", integrated), func(t *testing.T) {
			o := coreOpts(fmt.Sprint("batch", integrated), 1, "nosync")
			o.IntegratedFlush = integrated
			o.ClearFlushDelay = 500 * time.Millisecond
			c := ts.dial(t, o)
			defer c.Close()
			require.Equal(t, []string{"CTR/4", "GET_REGION_SIZE/0", "RESUME/0"}, take())
			mu.Lock()
			require.Equal(t, "32768 clustered-core 128 nosync\x00", ctr, "CTR carries the length and the type words, not the UUID")
			mu.Unlock()
			require.NoError(t, c.Flush(ctx))
			require.Empty(t, take(), "an empty flush sent something")

			for r := range 40 {
				c.MarkRegion(dirtylog.Region(r))
			}
			c.MarkRegion(5) // twice: one entry
			require.NoError(t, c.Flush(ctx))
			if integrated {
				require.Equal(t, []string{"FLUSH/40"}, take())
			} else {
				require.Equal(t, []string{"MARK_REGION/40", "FLUSH/0"}, take())
			}
			c.ClearRegion(3)
			c.ClearRegion(4)
			c.MarkRegion(50)
			require.NoError(t, c.Flush(ctx))
			if integrated {
				require.Equal(t, []string{"CLEAR_REGION/2", "FLUSH/1"}, take())
			} else {
				require.Equal(t, []string{"CLEAR_REGION/2", "MARK_REGION/1", "FLUSH/0"}, take())
			}
			// Last of mark and clear wins.
			c.MarkRegion(60)
			c.ClearRegion(60)
			c.ClearRegion(61)
			c.MarkRegion(61)
			require.NoError(t, c.Flush(ctx))
			got := take()
			if integrated {
				require.Equal(t, []string{"CLEAR_REGION/1", "FLUSH/1"}, got)
				// Clears only: sent now, the FLUSH comes after the delay.
				c.ClearRegion(7)
				require.NoError(t, c.Flush(ctx))
				require.Equal(t, []string{"CLEAR_REGION/1"}, take())
				eventually(t, 5*time.Second, func() bool {
					mu.Lock()
					defer mu.Unlock()
					return len(seen) == 1 && seen[0] == "FLUSH/0"
				}, "the delayed flush never came: %v", seen)
				take()
				// ... and a flush with marks cancels it.
				c.ClearRegion(8)
				require.NoError(t, c.Flush(ctx))
				c.MarkRegion(9)
				require.NoError(t, c.Flush(ctx))
				require.Equal(t, []string{"CLEAR_REGION/1", "FLUSH/1"}, take())
				// Deterministic, not a sleep: the delayed flush is disarmed,
				// and a timer that fired just as it was stopped sends
				// nothing (delayedFlush is synchronous, and the server
				// traces a request before it replies).
				c.flushMu.Lock()
				armed := c.clearTimer != nil
				c.flushMu.Unlock()
				require.False(t, armed, "a flush with marks left the delayed flush armed")
				c.delayedFlush()
				require.Empty(t, take(), "a cancelled delayed flush was sent")
			} else {
				require.Equal(t, []string{"CLEAR_REGION/1", "MARK_REGION/1", "FLUSH/0"}, got)
			}
			clean, err := c.IsClean(ctx, 60)
			require.NoError(t, err)
			require.True(t, clean)
			clean, err = c.IsClean(ctx, 61)
			require.NoError(t, err)
			require.False(t, clean)
			take()
			// Integrated: a clear-only flush schedules its FLUSH, and Close
			// runs it before DTR. Otherwise the FLUSH goes with the clears.
			c.ClearRegion(61)
			require.NoError(t, c.Flush(ctx))
			require.NoError(t, c.Close())
			require.Equal(t, []string{"CLEAR_REGION/1", "FLUSH/0", "DTR/0"}, take())
		})
	}
}

func TestUnreachableAndRedial(t *testing.T) {
	checkGoroutines(t)
	ts := startServer(t, ServerOptions{})
	ctx := context.Background()
	o := coreOpts("redial", 1, "nosync")
	o.RetryTimeout = 100 * time.Millisecond
	o.RedialMin, o.RedialMax = time.Millisecond, 20*time.Millisecond
	o.Timeout = 200 * time.Millisecond
	c := ts.dial(t, o)
	defer c.Close()
	c.MarkRegion(1)
	require.NoError(t, c.Flush(ctx))

	ts.stop()
	c.MarkRegion(2)
	err := c.Flush(ctx)
	require.ErrorIs(t, err, ErrUnreachable)
	_, err = c.InSync(dirtylog.NonBlocking(ctx), 2)
	require.ErrorIs(t, err, dirtylog.ErrWouldBlock)
	_, err = c.InSync(ctx, 2)
	require.ErrorIs(t, err, ErrUnreachable)
	require.Equal(t, "userspace 1 COM_FAILURE", c.Status())
	require.Zero(t, c.SyncCount())
	c.SetRegionSync(30, false) // kept and replayed after the redial

	ts.start(t) // a new, empty server (core backend) on the same socket
	eventually(t, 10*time.Second, func() bool { return c.Flush(ctx) == nil }, "never reconnected")
	other := ts.dial(t, coreOpts("redial", 2, "nosync"))
	defer other.Close()
	for r, want := range map[dirtylog.Region]bool{1: false, 2: false, 3: true} {
		clean, err := other.IsClean(ctx, r)
		require.NoError(t, err)
		require.Equal(t, want, clean, "region %d after the redial (replayed marks)", r)
	}
	in, err := other.InSync(ctx, 30)
	require.NoError(t, err)
	require.False(t, in, "the set-sync made while unreachable was lost")

	// A connection broken under the client is redialled transparently.
	c.dropConnection()
	_, ok, err := c.ResyncWork(ctx)
	require.NoError(t, err)
	require.True(t, ok)
}

// TestServerRestartKeepsFlushedMarks: a disk-backed log survives the
// server, even for a node that never comes back.
func TestServerRestartKeepsFlushedMarks(t *testing.T) {
	checkGoroutines(t)
	devs := &memDevices{}
	ts := startServer(t, ServerOptions{Open: devs.open, DeadAfter: 2 * time.Second})
	ctx := context.Background()
	args := []string{"clustered-disk", "ld", tRS, "nosync"}
	a := ts.dial(t, ClientOptions{UUID: "restart", Node: 1, DeviceSize: tDevice, Args: args})
	b := ts.dial(t, ClientOptions{UUID: "restart", Node: 2, DeviceSize: tDevice, Args: args,
		RedialMin: time.Millisecond, RedialMax: 20 * time.Millisecond, RetryTimeout: 10 * time.Second})
	defer b.Close()
	a.MarkRegion(5)
	a.MarkRegion(200)
	require.NoError(t, a.Flush(ctx))
	b.MarkRegion(6)
	require.NoError(t, b.Flush(ctx))
	b.ClearRegion(6)
	require.NoError(t, b.Flush(ctx))
	a.crash() // a never comes back to replay its marks

	img, err := dirtylog.ReadDiskImage(devs.get("ld"), 64<<10)
	require.NoError(t, err)
	require.Equal(t, []dirtylog.Region{5, 200}, img.Dirty())

	ts.restart(t)
	// "nosync" does not re-initialise an existing clustered-disk log.
	for r, want := range map[dirtylog.Region]bool{5: false, 200: false, 6: true} {
		var clean, in bool
		eventually(t, 10*time.Second, func() bool {
			var err error
			clean, err = b.IsClean(ctx, r)
			return err == nil
		}, "b never reconnected")
		in, err = b.InSync(ctx, r)
		require.NoError(t, err)
		require.Equal(t, want, clean, "region %d clean", r)
		require.Equal(t, want, in, "region %d in sync", r)
	}
	// The reopened log waits DeadAfter for its nodes to replay their marks
	// before it hands out resync work.
	_, ok, err := b.ResyncWork(ctx)
	require.NoError(t, err)
	require.False(t, ok, "resync work during the restart grace")
	got := map[dirtylog.Region]bool{}
	eventually(t, 10*time.Second, func() bool {
		r, ok, err := b.ResyncWork(ctx)
		if err == nil && ok {
			got[r] = true
			b.SetRegionSync(r, true)
		}
		return ok
	}, "no resync work after the grace")
	for _, r := range logtest.DrainResync(t, b) {
		got[r] = true
	}
	require.Equal(t, map[dirtylog.Region]bool{5: true, 200: true}, got)
	require.NoError(t, b.Flush(ctx))
	require.Equal(t, "3 clustered-disk ld A", b.Status())
	require.NoError(t, b.Suspend(ctx))
	img, err = dirtylog.ReadDiskImage(devs.get("ld"), 64<<10)
	require.NoError(t, err)
	require.Empty(t, img.Dirty())
}

// TestKillMidWrite: a node's connection dies in the middle of a request
// after its marks were flushed; once it is declared dead, another node
// resyncs its regions.
func TestKillMidWrite(t *testing.T) {
	checkGoroutines(t)
	ts := startServer(t, ServerOptions{DeadAfter: 50 * time.Millisecond})
	ctx := context.Background()
	b := ts.dial(t, coreOpts("kill", 2, "nosync"))
	defer b.Close()

	rc := dialRaw(t, ts.path)
	h := func(seq uint32, typ RequestType) Header { return Header{Seq: seq, Type: typ, LUID: 1, UUID: "kill"} }
	rh, _ := rc.call(h(1, RequestCtr), []byte(fmt.Sprintf("%d clustered-core %s nosync", tDevice/512, tRS)))
	require.Zero(t, rh.Error)
	rc.call(h(2, RequestResume), nil)
	rc.call(h(3, RequestMarkRegion), append(u64(40), u64(41)...))
	rc.call(h(4, RequestFlush), nil)
	clean, err := b.IsClean(ctx, 40)
	require.NoError(t, err)
	require.False(t, clean)
	// Half a CLEAR, then the connection dies.
	fb, _ := AppendFrame(nil, Header{Version: Version, Seq: 5, Type: RequestClearRegion, LUID: 1, UUID: "kill"}, u64(40))
	rc.nc.Write(fb[:HeaderSize+3])
	rc.nc.Close()

	eventually(t, 10*time.Second, func() bool {
		in40, _ := b.InSync(ctx, 40)
		in41, _ := b.InSync(ctx, 41)
		return !in40 && !in41
	}, "the dead node's regions never went out of sync")
	rec, err := b.RemoteRecovering(ctx, 41)
	require.NoError(t, err)
	require.True(t, rec)
	require.ElementsMatch(t, []dirtylog.Region{40, 41}, logtest.DrainResync(t, b))
	require.EqualValues(t, 256, b.SyncCount())
	clean, err = b.IsClean(ctx, 40)
	require.NoError(t, err)
	require.True(t, clean)
}

func TestDeathRules(t *testing.T) {
	checkGoroutines(t)
	ctx := context.Background()
	t.Run("ReconnectInTimeKeepsMarks", func(t *testing.T) {
		ts := startServer(t, ServerOptions{DeadAfter: 5 * time.Second})
		a := ts.dial(t, coreOpts("d1", 1, "nosync"))
		defer a.Close()
		b := ts.dial(t, coreOpts("d1", 2, "nosync"))
		defer b.Close()
		a.MarkRegion(3)
		require.NoError(t, a.Flush(ctx))
		a.dropConnection()
		require.NoError(t, func() error { _, err := a.IsClean(ctx, 3); return err }())
		in, err := b.InSync(ctx, 3)
		require.NoError(t, err)
		require.True(t, in)
		a.ClearRegion(3)
		require.NoError(t, a.Flush(ctx))
		clean, err := b.IsClean(ctx, 3)
		require.NoError(t, err)
		require.True(t, clean)
	})
	// The death rules below run on a fake clock: the server reports each
	// disconnection and whether it armed a death timer, and a timer fires
	// only when the test says, so "not declared dead" is a fact about the
	// server's decision, not about how long a sleep happened to last.
	t.Run("UnsuspendedNodeDiesWhenItsTimerFires", func(t *testing.T) {
		ts, clk, events := startClockedServer(t, ServerOptions{DeadAfter: time.Hour})
		a := ts.dial(t, coreOpts("d5", 1, "nosync"))
		b := ts.dial(t, coreOpts("d5", 2, "nosync"))
		defer b.Close()
		a.MarkRegion(3)
		require.NoError(t, a.Flush(ctx))
		a.crash()
		require.True(t, waitDetach(t, events, "d5", 1).armed, "no death timer for a node that left without suspend")
		in, err := b.InSync(ctx, 3)
		require.NoError(t, err)
		require.True(t, in, "declared dead before its timer fired")
		require.Equal(t, 1, clk.fire())
		in, err = b.InSync(ctx, 3)
		require.NoError(t, err)
		require.False(t, in, "the dead node's region must be resynced")
	})
	t.Run("SuspendedNodeIsNotDead", func(t *testing.T) {
		ts, clk, events := startClockedServer(t, ServerOptions{DeadAfter: 20 * time.Millisecond})
		a := ts.dial(t, coreOpts("d2", 1, "nosync"))
		b := ts.dial(t, coreOpts("d2", 2, "nosync"))
		defer b.Close()
		a.MarkRegion(3)
		require.NoError(t, a.Flush(ctx))
		require.NoError(t, a.Suspend(ctx))
		a.crash()
		require.False(t, waitDetach(t, events, "d2", 1).armed, "a death timer was armed for a suspended node")
		require.Zero(t, clk.fire(), "a death timer was armed for a suspended node")
		in, err := b.InSync(ctx, 3)
		require.NoError(t, err)
		require.True(t, in, "a suspended node was declared dead")
	})
	t.Run("NeverDead", func(t *testing.T) {
		ts, clk, events := startClockedServer(t, ServerOptions{DeadAfter: -1})
		a := ts.dial(t, coreOpts("d3", 1, "nosync"))
		b := ts.dial(t, coreOpts("d3", 2, "nosync"))
		defer b.Close()
		a.MarkRegion(3)
		require.NoError(t, a.Flush(ctx))
		a.crash()
		require.False(t, waitDetach(t, events, "d3", 1).armed, "DeadAfter < 0 armed a death timer")
		require.Zero(t, clk.armed())
		in, err := b.InSync(ctx, 3)
		require.NoError(t, err)
		require.True(t, in)
		clean, err := b.IsClean(ctx, 3)
		require.NoError(t, err)
		require.False(t, clean, "cmirrord mode: the crashed writer's region stays dirty")
	})
	t.Run("CloseWithMarksLeftResyncs", func(t *testing.T) {
		ts := startServer(t, ServerOptions{})
		a := ts.dial(t, coreOpts("d4", 1, "nosync"))
		b := ts.dial(t, coreOpts("d4", 2, "nosync"))
		defer b.Close()
		a.MarkRegion(3)
		require.NoError(t, a.Close())
		in, err := b.InSync(ctx, 3)
		require.NoError(t, err)
		require.False(t, in)
	})
}

// TestThousandConnections: 1,000 nodes on one log at once.
func TestThousandConnections(t *testing.T) {
	checkGoroutines(t)
	ts := startServer(t, ServerOptions{})
	const n = 1000
	ctx := context.Background()
	opts := func(i int) ClientOptions {
		return ClientOptions{UUID: "many", Node: NodeID(i + 1), DeviceSize: 1024 * tRegion,
			Args: []string{"clustered-core", tRS, "nosync"}}
	}
	clients := make([]*Client, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 64)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			c, err := Dial(ctx, "unix", ts.path, opts(i))
			if err != nil {
				errs <- err
				return
			}
			clients[i] = c
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	ts.srv.mu.Lock()
	require.Len(t, ts.srv.conns, n)
	ts.srv.mu.Unlock()
	// each runs f on every client concurrently and waits.
	each := func(f func(i int, c *Client) error) {
		for i, c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := f(i, c); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
	}
	requireClean := func(c *Client, want bool) {
		for _, r := range []dirtylog.Region{0, 499, 999, 1023} {
			clean, err := c.IsClean(ctx, r)
			require.NoError(t, err)
			require.Equal(t, want, clean, "region %d", r)
		}
	}
	// Every node marks its own region and one shared region, concurrently.
	each(func(i int, c *Client) error {
		c.MarkRegion(dirtylog.Region(i))
		c.MarkRegion(1023)
		return c.Flush(ctx)
	})
	requireClean(clients[7], false)
	each(func(i int, c *Client) error {
		c.ClearRegion(dirtylog.Region(i))
		c.ClearRegion(1023)
		return c.Flush(ctx)
	})
	requireClean(clients[3], true)
	each(func(_ int, c *Client) error { return c.Close() })
	require.Empty(t, ts.srv.Logs())
}

func TestCloseStopsEverything(t *testing.T) {
	checkGoroutines(t)
	ts := startServer(t, ServerOptions{DeadAfter: time.Hour})
	ctx := context.Background()
	o := coreOpts("close", 1)
	o.RetryTimeout = 50 * time.Millisecond
	a := ts.dial(t, o)
	b := ts.dial(t, coreOpts("close", 2))
	b.crash() // leaves a death timer running on the server
	require.NoError(t, ts.srv.Close())
	require.ErrorIs(t, ts.srv.Close(), ErrServerClosed)
	<-ts.done
	ts.srv = nil
	a.MarkRegion(1)
	require.ErrorIs(t, a.Flush(ctx), ErrUnreachable)
	require.Error(t, a.Close())
	require.ErrorIs(t, a.Close(), dirtylog.ErrClosed)
	require.ErrorIs(t, a.Flush(ctx), dirtylog.ErrClosed)
	_, err := a.IsClean(ctx, 0)
	require.True(t, errors.Is(err, dirtylog.ErrClosed), "%v", err)
}
