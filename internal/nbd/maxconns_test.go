package nbd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// logLines collects a server's log lines.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}

func (l *logLines) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

func (l *logLines) has(sub string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range l.lines {
		if strings.Contains(line, sub) {
			return true
		}
	}
	return false
}

// waitServing polls until the server counts n connections in transmission.
func waitServing(t *testing.T, s *Server, n int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for s.Stats().Serving != n {
		if time.Now().After(deadline) {
			t.Fatalf("want %d connections served: %+v", n, s.Stats())
		}
		time.Sleep(time.Millisecond) // polling a counter: there is nothing to wait on
	}
}

// negotiating dials and sends the client flags: a connection ready for
// options.
func negotiating(t *testing.T, addr net.Addr) *testClient {
	t.Helper()
	nc, r := dialRaw(t, addr)
	if _, err := nc.Write(binary.BigEndian.AppendUint32(nil, flagFixedNewstyle|flagNoZeroes)); err != nil {
		t.Fatal(err)
	}
	return &testClient{t: t, nc: nc, r: r}
}

// Beyond Options.MaxConns a client may negotiate (NBD_OPT_INFO, LIST) but
// its NBD_OPT_GO is refused with NBD_REP_ERR_POLICY and the reason,
// counted and logged, while the connections served go on; once one of
// them ends, the same client's next NBD_OPT_GO is served.
func TestMaxConnsRefusesGo(t *testing.T) {
	var log logLines
	dev := newMemDev(1 << 20)
	s, addr := startServer(t, Options{MaxConns: 2, Logf: log.logf}, Export{Name: "x", Size: 1 << 20, Dev: dev})
	c1, c2 := dial(t, addr, "x"), dial(t, addr, "x")

	c3 := negotiating(t, addr)
	sendOpt(t, c3.nc, optInfo, infoData("x"))
	for rep := readOptReply(t, c3.r); rep.typ != repAck; rep = readOptReply(t, c3.r) {
		if rep.typ != repInfo {
			t.Fatalf("NBD_OPT_INFO with the slots taken: %#x %q, want the export's information", rep.typ, rep.data)
		}
	}
	for range 2 {
		sendOpt(t, c3.nc, optGo, infoData("x"))
		rep := readOptReply(t, c3.r)
		if rep.opt != optGo || rep.typ != repErrPolicy || string(rep.data) != "too many connections: this server serves 2 at once; try again when one has ended" {
			t.Fatalf("NBD_OPT_GO with the slots taken: %#x %q, want NBD_REP_ERR_POLICY and the reason", rep.typ, rep.data)
		}
	}
	if st := s.Stats(); st.Refused != 2 || st.Serving != 2 || st.Active != 3 || st.Connections != 3 {
		t.Fatalf("stats %+v: want 2 refused, 2 served, 3 open", st)
	}
	if !log.has("NBD_OPT_GO refused: 2 connections served (Options.MaxConns)") {
		t.Errorf("log %q: want a line about the refusal", log.all())
	}

	if e, _ := c2.do(cmdRead, 0, 0, 512, nil); e != 0 {
		t.Fatalf("read on a served connection: errno %d", e)
	}
	c1.disconnect()
	waitServing(t, s, 1)
	sendOpt(t, c3.nc, optGo, infoData("x"))
	for rep := readOptReply(t, c3.r); rep.typ != repAck; rep = readOptReply(t, c3.r) {
		if rep.typ != repInfo {
			t.Fatalf("NBD_OPT_GO once a slot is free: %#x %q", rep.typ, rep.data)
		}
	}
	if e, _ := c3.do(cmdRead, 0, 0, 512, nil); e != 0 {
		t.Fatalf("read on the connection served at its third NBD_OPT_GO: errno %d", e)
	}
	// Two served again: the next one is refused.
	c4 := negotiating(t, addr)
	sendOpt(t, c4.nc, optGo, infoData("x"))
	if rep := readOptReply(t, c4.r); rep.typ != repErrPolicy {
		t.Fatalf("NBD_OPT_GO with two served again: %#x %q", rep.typ, rep.data)
	}
	if st := s.Stats(); st.Refused != 3 || st.Serving != 2 {
		t.Fatalf("stats %+v: want 3 refused, 2 served", st)
	}
}

// NBD_OPT_EXPORT_NAME cannot be answered with an error: beyond MaxConns
// the server ends the connection.
func TestMaxConnsExportNameCloses(t *testing.T) {
	var log logLines
	dev := newMemDev(1 << 20)
	s, addr := startServer(t, Options{MaxConns: 1, Logf: log.logf}, Export{Size: 1 << 20, Dev: dev})
	dial(t, addr, "")
	c := negotiating(t, addr)
	sendOpt(t, c.nc, optExportName, nil)
	if b, err := c.r.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("NBD_OPT_EXPORT_NAME with the one slot taken: read %#x, %v; want end of file", b, err)
	}
	if st := s.Stats(); st.Refused != 1 || st.Serving != 1 {
		t.Fatalf("stats %+v: want 1 refused, 1 served", st)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !log.has("too many connections: NBD_OPT_EXPORT_NAME with 1 connections served") {
		if time.Now().After(deadline) {
			t.Fatalf("log %q: want the reason the connection was closed", log.all())
		}
		time.Sleep(time.Millisecond) // the line comes as the connection ends
	}
}

// Silent clients cannot take the MaxConns slots: they stay in the
// negotiation, where at most MaxHandshakes are kept (the next is closed
// before the greeting, with one log line), while a client that negotiates
// is still served. Close ends the silent ones at once.
func TestSilentClientsDoNotHoldSlots(t *testing.T) {
	var log logLines
	dev := newMemDev(1 << 20)
	s, err := NewServer(Options{MaxConns: 1, Logf: log.logf}, Export{Size: 1 << 20, Dev: dev})
	if err != nil {
		t.Fatal(err)
	}
	l := listenUnix(t)
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	defer s.Close()
	var silent []net.Conn
	for range MaxHandshakes - 1 {
		nc, _ := dialRaw(t, l.Addr()) // greeted, then silent
		silent = append(silent, nc)
	}
	c := dial(t, l.Addr(), "") // the 64th negotiates and is served
	if e, _ := c.do(cmdRead, 0, 0, 512, nil); e != 0 {
		t.Fatalf("read with %d silent clients: errno %d", len(silent), e)
	}
	// The served one no longer counts as negotiating: one more silent
	// client makes MaxHandshakes, and the next is closed before the
	// greeting.
	last, _ := dialRaw(t, l.Addr())
	silent = append(silent, last)
	nc, err := net.DialTimeout(l.Addr().Network(), l.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second)) // fail fast rather than hang
	if n, err := nc.Read(make([]byte, 18)); !errors.Is(err, io.EOF) {
		t.Fatalf("a connection beyond %d negotiating: read %d bytes, %v; want end of file before the greeting", MaxHandshakes, n, err)
	}
	if st := s.Stats(); st.Refused != 1 || st.Serving != 1 || st.Active != MaxHandshakes+1 {
		t.Fatalf("stats %+v: want 1 refused, 1 served, %d open", st, MaxHandshakes+1)
	}
	if !log.has("closed at accept: 64 connections negotiating (MaxHandshakes)") {
		t.Errorf("log %q", log.all())
	}
	// Close with every silent client still connected: it ends them.
	t0 := time.Now()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Fatalf("Close took %v with silent clients connected", d)
	}
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve: %v", err)
	}
	for _, nc := range silent {
		if _, err := nc.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
			t.Fatalf("a silent client after Close: %v, want end of file", err)
		}
	}
}

// MaxConns defaults to DefaultMaxConns.
func TestMaxConnsDefault(t *testing.T) {
	o := Options{}
	o.fill()
	if o.MaxConns != DefaultMaxConns {
		t.Fatalf("MaxConns %d, want %d", o.MaxConns, DefaultMaxConns)
	}
}
