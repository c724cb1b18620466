package nbd

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"
)

// gatedDev blocks reads at offset 0 until release is called and reports
// each blocked read on entered. release may be called more than once;
// register it with t.Cleanup after the server's cleanup, so that it runs
// first even when the test fails.
func gatedDev(n int) (d *memDev, entered chan struct{}, release func()) {
	d = newMemDev(n)
	entered = make(chan struct{}, 16)
	gate := make(chan struct{})
	var once sync.Once
	d.gate = func(op string, off int64) {
		if op == "read" && off == 0 {
			entered <- struct{}{}
			<-gate
		}
	}
	return d, entered, func() { once.Do(func() { close(gate) }) }
}

func waitFor(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

func TestPipelinedOutOfOrder(t *testing.T) {
	dev, entered, release := gatedDev(1 << 20)
	s, addr := startServer(t, Options{}, Export{Size: 1 << 20, Dev: dev})
	t.Cleanup(release)
	c := dial(t, addr, "")
	c.send(cmdRead, 0, 1, 0, 4096, nil) // blocks in the device
	waitFor(t, entered, "the gated read to start")
	// Later requests complete and are answered while handle 1 is blocked.
	// (The read is sent after the write's reply: NBD does not order
	// requests in flight together.)
	p := bytes.Repeat([]byte{7}, 8192)
	c.send(cmdWrite, 0, 2, 8192, 8192, p)
	r := c.mustReply()
	if r.handle != 2 || r.errno != 0 {
		t.Fatalf("first reply %+v, want the write (handle 2) while the read of handle 1 is blocked", r)
	}
	c.send(cmdRead, 0, 3, 8192, 8192, nil)
	r = c.mustReply()
	if r.handle != 3 || r.errno != 0 {
		t.Fatalf("second reply %+v, want handle 3", r)
	}
	if got := c.readData(8192); !bytes.Equal(got, p) {
		t.Fatal("read of handle 3 returned other data")
	}
	release()
	if r = c.mustReply(); r.handle != 1 || r.errno != 0 {
		t.Fatalf("last reply %+v, want handle 1", r)
	}
	c.readData(4096)
	if m := s.Stats().MaxInFlight; m < 2 {
		t.Fatalf("MaxInFlight %d: requests did not overlap", m)
	}
}

func TestBadRequestsKeepConnection(t *testing.T) {
	const size = 1 << 20
	dev := newMemDev(size)
	_, addr := startServer(t, Options{}, Export{Size: size, Dev: dev, MinBlock: 512})
	c := dial(t, addr, "")
	if c.block[0] != 512 {
		t.Fatalf("minimum block %d, want 512", c.block[0])
	}
	big := make([]byte, DefaultMaxPayload+4096)
	cases := []struct {
		name      string
		typ, flag uint16
		off       uint64
		n         uint32
		payload   []byte
		errno     uint32
	}{
		{"read past the end", cmdRead, 0, size - 512, 1024, nil, errInval},
		{"read at a huge offset", cmdRead, 0, math.MaxUint64 - 511, 512, nil, errInval},
		{"write past the end", cmdWrite, 0, size, 512, make([]byte, 512), errNoSpc},
		{"write-zeroes past the end", cmdWriteZeroes, 0, size - 512, 4096, nil, errNoSpc},
		{"trim past the end", cmdTrim, 0, size, 512, nil, errInval},
		{"oversized read", cmdRead, 0, 0, DefaultMaxPayload + 4096, nil, errInval},
		{"oversized write", cmdWrite, 0, 0, uint32(len(big)), big, errInval},
		{"unaligned write", cmdWrite, 0, 100, 512, make([]byte, 512), errInval},
		{"unaligned read length", cmdRead, 0, 0, 100, nil, errInval},
		{"unknown command", 99, 0, 0, 0, nil, errInval},
		{"NO_HOLE on a write", cmdWrite, cmdFlagNoHole, 0, 512, make([]byte, 512), errInval},
		{"FUA and NO_HOLE on a trim", cmdTrim, cmdFlagFUA | cmdFlagNoHole, 0, 512, nil, errInval},
		{"unknown flag on flush", cmdFlush, 1 << 9, 0, 0, nil, errInval},
	}
	p := bytes.Repeat([]byte{0x5a}, 512)
	for i, tc := range cases {
		c.send(tc.typ, tc.flag, uint64(i), tc.off, tc.n, tc.payload)
		r := c.mustReply()
		if r.handle != uint64(i) || r.errno != tc.errno {
			t.Fatalf("%s: reply %+v, want handle %d errno %d", tc.name, r, i, tc.errno)
		}
		// The connection is still in step: a good request works.
		if e, _ := c.do(cmdWrite, 0, 512*uint64(i), 512, p); e != 0 {
			t.Fatalf("after %s: write errno %d", tc.name, e)
		}
	}
	if b := dev.bytes(); !bytes.Equal(b[:512], p) || bytes.Count(b, []byte{0x5a}) != 512*len(cases) {
		t.Fatal("refused requests changed the device")
	}
}

// With NBD_FLAG_SEND_FUA negotiated the server must accept FUA on every
// command, including reads and flushes (which write nothing).
func TestFUAAcceptedOnEveryCommand(t *testing.T) {
	dev := newMemDev(1 << 16)
	_, addr := startServer(t, Options{}, Export{Size: 1 << 16, Dev: dev})
	c := dial(t, addr, "")
	if c.flags&tflagSendFUA == 0 {
		t.Fatalf("flags %#x lack NBD_FLAG_SEND_FUA", c.flags)
	}
	p := bytes.Repeat([]byte{3}, 512)
	if e, _ := c.do(cmdWrite, 0, 0, 512, p); e != 0 {
		t.Fatalf("write errno %d", e)
	}
	if e, got := c.do(cmdRead, cmdFlagFUA, 0, 512, nil); e != 0 || !bytes.Equal(got, p) {
		t.Fatalf("FUA read: errno %d, data equal %v", e, bytes.Equal(got, p))
	}
	syncs := dev.syncs.Load()
	if e, _ := c.do(cmdFlush, cmdFlagFUA, 0, 0, nil); e != 0 {
		t.Fatalf("FUA flush: errno %d", e)
	}
	if dev.syncs.Load() != syncs+1 {
		t.Fatal("a FUA flush did not sync")
	}
	if e, _ := c.do(cmdTrim, cmdFlagFUA, 512, 512, nil); e != 0 {
		t.Fatalf("FUA trim: errno %d", e)
	}
}

func TestBadMagicClosesOnlyThatConnection(t *testing.T) {
	_, addr := startServer(t, Options{}, Export{Size: 1 << 20, Dev: newMemDev(1 << 20)})
	good := dial(t, addr, "")
	bad := dial(t, addr, "")
	hdr := make([]byte, requestSize)
	binary.BigEndian.PutUint32(hdr, 0xdeadbeef)
	if _, err := bad.nc.Write(hdr); err != nil {
		t.Fatal(err)
	}
	if _, err := bad.reply(); err != io.EOF {
		t.Fatalf("after a bad request magic: %v, want the connection closed (EOF)", err)
	}
	if e, _ := good.do(cmdWrite, 0, 0, 4, []byte("ok!!")); e != 0 {
		t.Fatalf("other connection: errno %d", e)
	}
}

func TestNegotiation(t *testing.T) {
	_, addr := startServer(t, Options{}, Export{Name: "a", Size: 4096, Dev: newMemDev(4096)},
		Export{Name: "b", Size: 8192, Dev: newMemDev(8192), ReadOnly: true, Description: "second"})
	nc, r := dialRaw(t, addr)
	nc.Write(binary.BigEndian.AppendUint32(nil, flagFixedNewstyle))
	sendOpt(t, nc, 1000, []byte("whatever"))
	if rep := readOptReply(t, r); rep.typ != repErrUnsup || rep.opt != 1000 {
		t.Fatalf("unknown option: %+v", rep)
	}
	sendOpt(t, nc, optList, nil)
	var names []string
	for {
		rep := readOptReply(t, r)
		if rep.typ == repAck {
			break
		}
		if rep.typ != repServer {
			t.Fatalf("list reply %+v", rep)
		}
		names = append(names, string(rep.data[4:4+binary.BigEndian.Uint32(rep.data)]))
	}
	if len(names) != 2 || names[0] != "a" || names[1] != "b" {
		t.Fatalf("listed %q", names)
	}
	sendOpt(t, nc, optList, []byte{1})
	if rep := readOptReply(t, r); rep.typ != repErrInvalid {
		t.Fatalf("list with data: %+v", rep)
	}
	sendOpt(t, nc, optInfo, infoData("nope"))
	if rep := readOptReply(t, r); rep.typ != repErrUnknown {
		t.Fatalf("info of an unknown export: %+v", rep)
	}
	sendOpt(t, nc, optInfo, []byte{0, 0, 0, 9, 'a'})
	if rep := readOptReply(t, r); rep.typ != repErrInvalid {
		t.Fatalf("malformed info: %+v", rep)
	}
	sendOpt(t, nc, optInfo, infoData("b", infoName, infoDescription))
	got := map[uint16][]byte{}
	for {
		rep := readOptReply(t, r)
		if rep.typ == repAck {
			break
		}
		got[binary.BigEndian.Uint16(rep.data)] = rep.data[2:]
	}
	if e := got[infoExport]; len(e) != 10 || binary.BigEndian.Uint64(e) != 8192 || binary.BigEndian.Uint16(e[8:])&tflagReadOnly == 0 {
		t.Fatalf("info export %x", e)
	}
	if string(got[infoName]) != "b" || string(got[infoDescription]) != "second" || len(got[infoBlockSize]) != 12 {
		t.Fatalf("info %v", got)
	}
	// NBD_OPT_INFO does not end the negotiation: NBD_OPT_EXPORT_NAME
	// (without NO_ZEROES: 124 zero bytes follow) still works.
	sendOpt(t, nc, optExportName, []byte("b"))
	var ex [134]byte
	if _, err := io.ReadFull(r, ex[:]); err != nil {
		t.Fatal(err)
	}
	if binary.BigEndian.Uint64(ex[:]) != 8192 || !bytes.Equal(ex[10:], make([]byte, 124)) {
		t.Fatalf("export name reply %x", ex)
	}
	c := &testClient{t: t, nc: nc, r: r}
	if e, _ := c.do(cmdWrite, 0, 0, 1, []byte{1}); e != errPerm {
		t.Fatalf("write to a read-only export: errno %d, want EPERM", e)
	}
}

func TestNegotiationFailuresClose(t *testing.T) {
	_, addr := startServer(t, Options{}, Export{Size: 4096, Dev: newMemDev(4096)})
	// The server's handshake timeout is 30 s: a connection still open
	// after 5 s was not closed for the bad input.
	var nc net.Conn
	closed := func(name string, r io.Reader) {
		t.Helper()
		nc.SetDeadline(time.Now().Add(5 * time.Second))
		if n, err := io.Copy(io.Discard, r); err != nil {
			t.Fatalf("%s: %v after %d bytes, want a clean close", name, err, n)
		}
	}
	var r *bufio.Reader
	nc, r = dialRaw(t, addr)
	nc.Write([]byte{0, 0, 0, 0}) // not fixed newstyle
	closed("old client flags", r)

	nc, r = dialRaw(t, addr)
	nc.Write(binary.BigEndian.AppendUint32(nil, flagFixedNewstyle|1<<7))
	closed("unknown client flags", r)

	nc, r = dialRaw(t, addr)
	nc.Write(binary.BigEndian.AppendUint32(nil, flagFixedNewstyle))
	nc.Write(make([]byte, 16)) // bad option magic
	closed("bad option magic", r)

	nc, r = dialRaw(t, addr)
	nc.Write(binary.BigEndian.AppendUint32(nil, flagFixedNewstyle))
	sendOpt(t, nc, optExportName, []byte("missing"))
	closed("unknown export name", r)

	nc, r = dialRaw(t, addr)
	nc.Write(binary.BigEndian.AppendUint32(nil, flagFixedNewstyle))
	b := binary.BigEndian.AppendUint64(nil, magicOpt)
	b = binary.BigEndian.AppendUint32(b, optGo)
	b = binary.BigEndian.AppendUint32(b, 1<<30)
	nc.Write(b)
	closed("a 1 GiB option", r)

	nc, r = dialRaw(t, addr)
	nc.Write(binary.BigEndian.AppendUint32(nil, flagFixedNewstyle))
	sendOpt(t, nc, optAbort, nil)
	if rep := readOptReply(t, r); rep.typ != repAck {
		t.Fatalf("abort: %+v", rep)
	}
	closed("abort", r)

	// The server still serves.
	c := dial(t, addr, "")
	if e, _ := c.do(cmdFlush, 0, 0, 0, nil); e != 0 {
		t.Fatalf("flush errno %d", e)
	}
}

func TestDisconnectLosesNothingAcknowledged(t *testing.T) {
	dev, entered, release := gatedDev(1 << 20)
	_, addr := startServer(t, Options{}, Export{Size: 1 << 20, Dev: dev})
	t.Cleanup(release)
	c := dial(t, addr, "")
	a := bytes.Repeat([]byte{0xa1}, 4096)
	if e, _ := c.do(cmdWrite, 0, 4096, 4096, a); e != 0 {
		t.Fatalf("write errno %d", e)
	}
	c.send(cmdRead, 0, 5, 0, 4096, nil) // in flight when the client leaves
	waitFor(t, entered, "the gated read")
	b := bytes.Repeat([]byte{0xb2}, 4096)
	c.send(cmdWrite, 0, 6, 8192, 4096, b)      // received whole
	c.send(cmdWrite, 0, 7, 12288, 4096, b[:7]) // cut short
	c.nc.Close()
	release()

	c2 := dial(t, addr, "")
	if _, got := c2.do(cmdRead, 0, 4096, 4096, nil); !bytes.Equal(got, a) {
		t.Fatal("an acknowledged write was lost when the client disconnected")
	}
	if _, got := c2.do(cmdRead, 0, 12288, 4096, nil); !bytes.Equal(got, make([]byte, 4096)) {
		t.Fatal("a write cut short was applied")
	}
}

func TestConcurrentConnections(t *testing.T) {
	const n = 8
	dev := newMemDev(n * 65536)
	s, addr := startServer(t, Options{}, Export{Size: n * 65536, Dev: dev, MultiConn: true})
	cs := make([]*testClient, n)
	for i := range cs {
		cs[i] = dial(t, addr, "")
	}
	for i, c := range cs { // every connection has 16 writes in flight
		for j := 0; j < 16; j++ {
			c.send(cmdWrite, 0, uint64(j), uint64(i*65536+j*4096), 4096, bytes.Repeat([]byte{byte(i*16 + j)}, 4096))
		}
	}
	for i, c := range cs {
		seen := map[uint64]bool{}
		for j := 0; j < 16; j++ {
			r := c.mustReply()
			if r.errno != 0 || seen[r.handle] || r.handle >= 16 {
				t.Fatalf("connection %d: reply %+v", i, r)
			}
			seen[r.handle] = true
		}
	}
	b := dev.bytes()
	for i := 0; i < n*16; i++ {
		if !bytes.Equal(b[i*4096:(i+1)*4096], bytes.Repeat([]byte{byte(i)}, 4096)) {
			t.Fatalf("block %d wrong", i)
		}
	}
	if st := s.Stats(); st.Connections != n || st.Writes != n*16 {
		t.Fatalf("stats %+v", st)
	}
}

func TestSlowClientsDoNotBlockOthers(t *testing.T) {
	_, addr := startServer(t, Options{}, Export{Size: 64 << 20, Dev: newMemDev(64 << 20)})
	idle, _ := dialRaw(t, addr) // stops in the negotiation
	_ = idle
	slow := dial(t, addr, "") // asks for 256 MiB of reads and reads no reply
	for i := 0; i < 8; i++ {
		slow.send(cmdRead, 0, uint64(i), 0, 32<<20, nil)
	}
	fast := dial(t, addr, "")
	for i := 0; i < 50; i++ {
		p := bytes.Repeat([]byte{byte(i)}, 4096)
		if e, _ := fast.do(cmdWrite, 0, uint64(i)*4096, 4096, p); e != 0 {
			t.Fatalf("write errno %d", e)
		}
		if _, got := fast.do(cmdRead, 0, uint64(i)*4096, 4096, nil); !bytes.Equal(got, p) {
			t.Fatal("read back differs")
		}
	}
}

func TestCloseDrainsAndLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	dev, entered, release := gatedDev(64 << 20) // room for the deaf client's 32 MiB reads
	// The deaf client's reads (at 4096) report that they started: from
	// then on their 32 MiB replies are certain to be sent after Close and
	// to block, so Close must cut them after the drain timeout.
	deafStarted := make(chan struct{}, 16)
	gated := dev.gate
	dev.gate = func(op string, off int64) {
		if op == "read" && off == 4096 {
			select {
			case deafStarted <- struct{}{}:
			default:
			}
		}
		gated(op, off)
	}
	s, err := NewServer(Options{DrainTimeout: 2 * time.Second}, Export{Size: 64 << 20, Dev: dev})
	if err != nil {
		t.Fatal(err)
	}
	l := listenUnix(t)
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	t.Cleanup(func() { release(); s.Close() })
	idle, _ := dialRaw(t, l.Addr())
	_ = idle
	busy := dial(t, l.Addr(), "")
	busy.send(cmdRead, 0, 9, 0, 4096, nil)
	waitFor(t, entered, "the gated read")
	deaf := dial(t, l.Addr(), "") // never reads its replies
	for i := 0; i < 8; i++ {
		deaf.send(cmdRead, 0, uint64(i), 4096, 32<<20-4096, nil)
	}
	waitFor(t, deafStarted, "a read of the deaf client to start")
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	release()
	// The request running at Close is answered before the connection ends.
	if r := busy.mustReply(); r.handle != 9 || r.errno != 0 {
		t.Fatalf("reply %+v", r)
	}
	busy.readData(4096)
	if _, err := busy.reply(); err != io.EOF {
		t.Fatalf("after Close: %v, want EOF", err)
	}
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return (the deaf client should be cut after the drain timeout)")
	}
	if err := <-served; err != ErrServerClosed {
		t.Fatalf("Serve: %v", err)
	}
	if a := s.Stats().Active; a != 0 {
		t.Fatalf("%d connections active after Close", a)
	}
	idle.Close()
	deaf.nc.Close()
	busy.nc.Close()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		runtime.Gosched()
		time.Sleep(time.Millisecond) // polling the goroutine count: there is nothing to wait on
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<16)
		t.Fatalf("%d goroutines after Close, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
}

func TestReadOnlyRefusesEveryWrite(t *testing.T) {
	dev := newMemDev(1 << 16)
	want := bytes.Repeat([]byte{0x42}, 1<<16)
	copy(dev.b, want)
	_, addr := startServer(t, Options{}, Export{Size: 1 << 16, Dev: dev, ReadOnly: true})
	c := dial(t, addr, "")
	if c.flags&tflagReadOnly == 0 {
		t.Fatalf("flags %#x lack NBD_FLAG_READ_ONLY", c.flags)
	}
	for _, tc := range []struct {
		name    string
		typ     uint16
		flags   uint16
		payload []byte
	}{
		{"write", cmdWrite, 0, make([]byte, 512)},
		{"FUA write", cmdWrite, cmdFlagFUA, make([]byte, 512)},
		{"write-zeroes", cmdWriteZeroes, 0, nil},
		{"NO_HOLE write-zeroes", cmdWriteZeroes, cmdFlagNoHole, nil},
		{"trim", cmdTrim, 0, nil},
	} {
		if e, _ := c.do(tc.typ, tc.flags, 0, 512, tc.payload); e != errPerm {
			t.Fatalf("%s on a read-only export: errno %d, want EPERM", tc.name, e)
		}
	}
	if e, got := c.do(cmdRead, 0, 0, 512, nil); e != 0 || !bytes.Equal(got, want[:512]) {
		t.Fatalf("read: errno %d", e)
	}
	if !bytes.Equal(dev.bytes(), want) {
		t.Fatal("a read-only export was changed")
	}
}

// NBD_OPT_EXPORT_NAME with NBD_FLAG_C_NO_ZEROES is answered with exactly
// the size and flags: the transmission phase starts right after them.
func TestExportNameWithNoZeroes(t *testing.T) {
	_, addr := startServer(t, Options{}, Export{Name: "e", Size: 8192, Dev: newMemDev(8192)})
	nc, r := dialRaw(t, addr)
	if _, err := nc.Write(binary.BigEndian.AppendUint32(nil, flagFixedNewstyle|flagNoZeroes)); err != nil {
		t.Fatal(err)
	}
	sendOpt(t, nc, optExportName, []byte("e"))
	var ex [10]byte
	if _, err := io.ReadFull(r, ex[:]); err != nil {
		t.Fatal(err)
	}
	if binary.BigEndian.Uint64(ex[:]) != 8192 || binary.BigEndian.Uint16(ex[8:])&tflagHasFlags == 0 {
		t.Fatalf("export name reply %x", ex)
	}
	c := &testClient{t: t, nc: nc, r: r}
	if e, _ := c.do(cmdFlush, 0, 0, 0, nil); e != 0 {
		t.Fatalf("flush errno %d", e)
	}
}

// failingReadDev fails reads at offset 0 and returns short reads (with
// io.EOF, or with no error at all) at 4096 and 8192.
type failingReadDev struct{ *memDev }

func (d failingReadDev) ReadAt(p []byte, off int64) (int, error) {
	switch off {
	case 0:
		return 0, errors.New("injected read error")
	case 4096:
		n, _ := d.memDev.ReadAt(p[:len(p)/2], off)
		return n, io.EOF
	case 8192:
		n, _ := d.memDev.ReadAt(p[:len(p)/2], off)
		return n, nil
	}
	return d.memDev.ReadAt(p, off)
}

// A failed or short read is answered with NBD_EIO and no data, and the
// connection stays in step.
func TestReadErrorsSendNoData(t *testing.T) {
	dev := newMemDev(1 << 16)
	want := bytes.Repeat([]byte{0x77}, 4096)
	copy(dev.b[12288:], want)
	_, addr := startServer(t, Options{}, Export{Size: 1 << 16, Dev: failingReadDev{dev}})
	c := dial(t, addr, "")
	for _, off := range []uint64{0, 4096, 8192} {
		if e, _ := c.do(cmdRead, 0, off, 4096, nil); e != errIO {
			t.Fatalf("read at %d: errno %d, want EIO", off, e)
		}
		if e, got := c.do(cmdRead, 0, 12288, 4096, nil); e != 0 || !bytes.Equal(got, want) {
			t.Fatalf("read after the failed read at %d: errno %d, data equal %v", off, e, bytes.Equal(got, want))
		}
	}
}

// MaxInFlight bounds the requests running at once on a connection: with
// two reads blocked in the device a third does not start.
func TestMaxInFlightBoundsRunningRequests(t *testing.T) {
	dev, entered, release := gatedDev(1 << 20)
	s, addr := startServer(t, Options{MaxInFlight: 2}, Export{Size: 1 << 20, Dev: dev})
	t.Cleanup(release)
	c := dial(t, addr, "")
	for i := 0; i < 4; i++ {
		c.send(cmdRead, 0, uint64(i), 0, 4096, nil)
	}
	waitFor(t, entered, "the first read to start")
	waitFor(t, entered, "the second read to start")
	// A bounded wait for something that must not happen: it cannot fail a
	// correct server, only let a broken one pass now and then.
	select {
	case <-entered:
		t.Fatal("a third request started while two were running (MaxInFlight 2)")
	case <-time.After(100 * time.Millisecond):
	}
	release()
	seen := map[uint64]bool{}
	for i := 0; i < 4; i++ {
		r := c.mustReply()
		if r.errno != 0 || r.handle >= 4 || seen[r.handle] {
			t.Fatalf("reply %+v", r)
		}
		seen[r.handle] = true
		c.readData(4096)
	}
	if m := s.Stats().MaxInFlight; m != 2 {
		t.Fatalf("MaxInFlight statistic %d, want 2", m)
	}
}

// A MaxBufferBytes below the largest payload is raised to it: a full-size
// read must not wait forever for buffer space.
func TestSmallBufferBudgetStillServesMaxPayload(t *testing.T) {
	dev := newMemDev(1 << 20)
	_, addr := startServer(t, Options{MaxPayload: 256 << 10, MaxBufferBytes: 4096}, Export{Size: 1 << 20, Dev: dev})
	c := dial(t, addr, "")
	c.nc.SetDeadline(time.Now().Add(5 * time.Second))
	p := bytes.Repeat([]byte{1}, 256<<10)
	if e, _ := c.do(cmdWrite, 0, 0, 256<<10, p); e != 0 {
		t.Fatalf("write errno %d", e)
	}
	if e, got := c.do(cmdRead, 0, 0, 256<<10, nil); e != 0 || !bytes.Equal(got, p) {
		t.Fatalf("read errno %d", e)
	}
}

// Close returns only after the requests running on its connections have
// finished and their connections have ended.
func TestCloseWaitsForRunningRequests(t *testing.T) {
	dev, entered, release := gatedDev(1 << 20)
	s, err := NewServer(Options{}, Export{Size: 1 << 20, Dev: dev})
	if err != nil {
		t.Fatal(err)
	}
	l := listenUnix(t)
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	t.Cleanup(func() { release(); s.Close() })
	c := dial(t, l.Addr(), "")
	c.send(cmdRead, 0, 1, 0, 4096, nil)
	waitFor(t, entered, "the gated read")
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	release()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return")
	}
	if st := s.Stats(); st.Active != 0 || st.Reads != 1 {
		t.Fatalf("after Close: %d connections active, %d reads answered; want 0 and 1", st.Active, st.Reads)
	}
	if r := c.mustReply(); r.handle != 1 || r.errno != 0 {
		t.Fatalf("reply %+v", r)
	}
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve: %v", err)
	}
}

// The empty name opens the first export when no export is named "".
func TestEmptyNameOpensTheFirstExport(t *testing.T) {
	_, addr := startServer(t, Options{}, Export{Name: "a", Size: 4096, Dev: newMemDev(4096)},
		Export{Name: "b", Size: 8192, Dev: newMemDev(8192)})
	if c := dial(t, addr, ""); c.size != 4096 {
		t.Fatalf("the default export has %d bytes, want export a's 4096", c.size)
	}
}

// Write-zeroes (over more than the server's 1 MiB chunk) and trim change
// exactly their range.
func TestZeroesAndTrimCoverExactlyTheirRange(t *testing.T) {
	const size = 8 << 20
	dev := newMemDev(size)
	copy(dev.b, bytes.Repeat([]byte{0xff}, size))
	_, addr := startServer(t, Options{}, Export{Size: size, Dev: dev})
	c := dial(t, addr, "")
	const zOff, zLen = 4096, 3<<20 + 8192 // four chunks, the last short
	const tOff, tLen = 6 << 20, 12288
	if e, _ := c.do(cmdWriteZeroes, 0, zOff, zLen, nil); e != 0 {
		t.Fatalf("write-zeroes errno %d", e)
	}
	if e, _ := c.do(cmdTrim, 0, tOff, tLen, nil); e != 0 {
		t.Fatalf("trim errno %d", e)
	}
	b := dev.bytes()
	for i, x := range b {
		zero := (i >= zOff && i < zOff+zLen) || (i >= tOff && i < tOff+tLen)
		if zero != (x == 0) {
			t.Fatalf("byte %d is %#x; want zero exactly in [%d,%d) and [%d,%d)", i, x, zOff, zOff+zLen, tOff, tOff+tLen)
		}
	}
}

// Requests the server reads after Close began (from its read buffer) are
// answered with NBD_ESHUTDOWN, not run, so a pipelined backlog cannot keep
// Close busy: here the connection is marked closing before it reads.
func TestRequestsAfterCloseGetESHUTDOWN(t *testing.T) {
	dev := newMemDev(1 << 20)
	s, err := NewServer(Options{}, Export{Size: 1 << 20, Dev: dev})
	if err != nil {
		t.Fatal(err)
	}
	srv, cli := socketPair(t)
	defer cli.Close()
	cli.SetDeadline(time.Now().Add(10 * time.Second))
	c := newConn(s, srv)
	c.closing = true
	done := make(chan error, 1)
	go func() {
		defer srv.Close()
		done <- c.transmit(newSession(srv), &s.exports[0])
	}()
	const n = 16
	var batch []byte
	for i := 1; i <= n; i++ {
		typ := uint16(cmdWrite)
		if i%2 == 0 {
			typ = cmdRead
		}
		b := binary.BigEndian.AppendUint32(nil, magicRequest)
		b = binary.BigEndian.AppendUint16(b, 0)
		b = binary.BigEndian.AppendUint16(b, typ)
		b = binary.BigEndian.AppendUint64(b, uint64(i))
		b = binary.BigEndian.AppendUint64(b, uint64(i)*512)
		b = binary.BigEndian.AppendUint32(b, 512)
		batch = append(batch, b...)
		if typ == cmdWrite {
			batch = append(batch, bytes.Repeat([]byte{0xee}, 512)...)
		}
	}
	if _, err := cli.Write(batch); err != nil {
		t.Fatal(err)
	}
	cli.CloseWrite()
	tc := &testClient{t: t, nc: cli, r: bufio.NewReader(cli)}
	for i := 1; i <= n; i++ {
		if r := tc.mustReply(); r.handle != uint64(i) || r.errno != errShutdown {
			t.Fatalf("reply %+v, want handle %d with NBD_ESHUTDOWN", r, i)
		}
	}
	if _, err := tc.reply(); err != io.EOF {
		t.Fatalf("after the replies: %v, want EOF", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("transmit: %v", err)
	}
	if !bytes.Equal(dev.bytes(), make([]byte, 1<<20)) {
		t.Fatal("a write read after Close reached the device")
	}
}
