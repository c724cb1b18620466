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

func (l *logLines) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

// waitActive polls until the server counts n open connections.
func waitActive(t *testing.T, s *Server, n int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for s.Stats().Active != n {
		if time.Now().After(deadline) {
			t.Fatalf("want %d active connections: %+v", n, s.Stats())
		}
		time.Sleep(time.Millisecond) // polling a counter: there is nothing to wait on
	}
}

// Beyond Options.MaxConns a connection is greeted and every option it
// sends is refused with NBD_REP_ERR_POLICY and a message; it is counted
// and logged, and the open connections go on. Once one of them ends, a new
// one is served again.
func TestMaxConnsRefusesExtra(t *testing.T) {
	var log logLines
	dev := newMemDev(1 << 20)
	s, addr := startServer(t, Options{MaxConns: 2, Logf: log.logf}, Export{Name: "x", Size: 1 << 20, Dev: dev})
	c1, c2 := dial(t, addr, "x"), dial(t, addr, "x")

	nc, r := dialRaw(t, addr)
	if _, err := nc.Write(binary.BigEndian.AppendUint32(nil, flagFixedNewstyle|flagNoZeroes)); err != nil {
		t.Fatal(err)
	}
	for _, o := range []struct {
		opt  uint32
		data []byte
	}{{optGo, infoData("x")}, {optList, nil}, {optInfo, infoData("x")}, {8, nil}} { // 8: NBD_OPT_STRUCTURED_REPLY, not supported otherwise {
		sendOpt(t, nc, o.opt, o.data)
		rep := readOptReply(t, r)
		if rep.opt != o.opt || rep.typ != repErrPolicy || !strings.Contains(string(rep.data), "too many connections: this server serves 2 at once") {
			t.Fatalf("option %d answered with %#x %q, want NBD_REP_ERR_POLICY and the reason", o.opt, rep.typ, rep.data)
		}
	}
	sendOpt(t, nc, optAbort, nil)
	if rep := readOptReply(t, r); rep.typ != repAck {
		t.Fatalf("abort answered with %#x", rep.typ)
	}
	if _, err := r.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the abort: %v, want end of file", err)
	}
	if st := s.Stats(); st.Refused != 1 || st.Active != 2 || st.Connections != 2 {
		t.Fatalf("stats %+v: want 1 refused, 2 active, 2 served", st)
	}
	if l := log.get(); len(l) != 1 || !strings.Contains(l[0], "refused: 2 connections open") {
		t.Errorf("log %q: want one line about the refused connection", l)
	}

	// The open ones still work; when one ends, a new one is served.
	if e, _ := c2.do(cmdRead, 0, 0, 512, nil); e != 0 {
		t.Fatalf("read on the second connection: errno %d", e)
	}
	c1.disconnect()
	waitActive(t, s, 1)
	c3 := dial(t, addr, "x")
	if e, _ := c3.do(cmdRead, 0, 0, 512, nil); e != 0 {
		t.Fatalf("read on a connection after one ended: errno %d", e)
	}
	if st := s.Stats(); st.Refused != 1 || st.Connections != 3 {
		t.Fatalf("stats %+v: want 1 refused, 3 served", st)
	}
	// The refused connection has ended and is not counted any more: with
	// two open again, the next one is refused.
	nc, r = dialRaw(t, addr)
	if _, err := nc.Write(binary.BigEndian.AppendUint32(nil, flagFixedNewstyle|flagNoZeroes)); err != nil {
		t.Fatal(err)
	}
	sendOpt(t, nc, optGo, infoData("x"))
	if rep := readOptReply(t, r); rep.typ != repErrPolicy {
		t.Fatalf("a third connection with two open: answered %#x %q, want NBD_REP_ERR_POLICY", rep.typ, rep.data)
	}
	if st := s.Stats(); st.Refused != 2 || st.Connections != 3 {
		t.Fatalf("stats %+v: want 2 refused, 3 served", st)
	}
}

// While maxRefusing connections are being refused (here: clients that
// stall in the handshake), the next one beyond MaxConns is closed before
// the greeting; refused connections never count as open ones, and Close
// ends the stalled ones.
func TestMaxConnsFloodClosedAtOnce(t *testing.T) {
	var log logLines
	dev := newMemDev(1 << 20)
	s, addr := startServer(t, Options{MaxConns: 1, Logf: log.logf}, Export{Size: 1 << 20, Dev: dev})
	dial(t, addr, "")
	for range maxRefusing {
		dialRaw(t, addr) // greeted, then silent
	}
	nc, err := net.DialTimeout(addr.Network(), addr.String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second)) // fail fast rather than hang
	if n, err := nc.Read(make([]byte, 18)); !errors.Is(err, io.EOF) {
		t.Fatalf("connection beyond %d being refused: read %d bytes, %v; want end of file before the greeting", maxRefusing, n, err)
	}
	if st := s.Stats(); st.Refused != maxRefusing+1 || st.Active != 1 {
		t.Fatalf("stats %+v: want %d refused, 1 active", st, maxRefusing+1)
	}
	l := log.get()
	if len(l) != maxRefusing+1 || !strings.Contains(l[maxRefusing], "closed: 1 connections open (Options.MaxConns) and 4 being refused") {
		t.Errorf("log %q", l)
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
