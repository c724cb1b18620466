package nbd

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/dmlog/dmlog/internal/fixture"
)

// tool finds an external client or skips the test.
var tool = fixture.Tool

// run runs a client with a deadline and returns its combined output.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	return fixture.Run(t, 30*time.Second, name, args...)
}

func nbdURI(sock string) string { return "nbd+unix:///?socket=" + sock }

func TestNbdinfo(t *testing.T) {
	nbdinfo := tool(t, "nbdinfo", "libnbd-bin")
	dev := newMemDev(8 << 20)
	_, addr := startServer(t, Options{}, Export{Size: 8 << 20, Dev: dev, MultiConn: true, Description: "test export"})
	out := run(t, nbdinfo, nbdURI(addr.String()))
	for _, want := range []string{"export-size: 8388608", "can_flush: true", "can_fua: true", "can_trim: true",
		"can_zero: true", "can_multi_conn: true", "is_read_only: false", "block_size_minimum: 1",
		"block_size_preferred: 4096", "block_size_maximum: 33554432", "description: test export"} {
		if !strings.Contains(out, want) {
			t.Errorf("nbdinfo output lacks %q:\n%s", want, out)
		}
	}
	list := run(t, nbdinfo, "--list", nbdURI(addr.String()))
	if !strings.Contains(list, "export=") {
		t.Errorf("nbdinfo --list: %s", list)
	}
}

func TestQemuIO(t *testing.T) {
	qemuIO := tool(t, "qemu-io", "qemu-utils")
	dev := newMemDev(16 << 20)
	s, addr := startServer(t, Options{}, Export{Size: 16 << 20, Dev: dev})
	out := run(t, qemuIO, "-f", "raw",
		"-c", "write -P 0xab 0 1M",
		"-c", "write -f -P 0xcd 1M 64k",
		"-c", "flush",
		"-c", "discard 2M 1M",
		"-c", "write -z 4M 1M",
		"-c", "read -P 0xab 0 1M",
		"-c", "read -P 0xcd 1M 64k",
		"-c", "read -P 0 4M 1M",
		nbdURI(addr.String()))
	if strings.Contains(out, "Pattern verification failed") || strings.Contains(out, "error") {
		t.Fatalf("qemu-io:\n%s", out)
	}
	b := dev.bytes()
	if !bytes.Equal(b[:1<<20], bytes.Repeat([]byte{0xab}, 1<<20)) || !bytes.Equal(b[1<<20:1<<20+64<<10], bytes.Repeat([]byte{0xcd}, 64<<10)) {
		t.Fatal("device does not hold what qemu-io wrote")
	}
	st := s.Stats()
	if st.FUAWrites < 1 || st.Flushes < 1 || st.Trims < 1 || st.WriteZeroes < 1 {
		t.Fatalf("stats %+v: want a FUA write, a flush, a trim and a write-zeroes", st)
	}
	t.Logf("%+v", st)
}

// Real clients beyond MaxConns fail with the server's reason (qemu-img
// prints it: "server reported: too many connections ..."; nbdinfo says
// the server replied with an error) and succeed once the connection
// holding the one slot has ended.
func TestRealClientsBeyondMaxConns(t *testing.T) {
	nbdinfo := tool(t, "nbdinfo", "libnbd-bin")
	qemuImg := tool(t, "qemu-img", "qemu-utils")
	dev := newMemDev(1 << 20)
	s, addr := startServer(t, Options{MaxConns: 1}, Export{Size: 1 << 20, Dev: dev})
	held := dial(t, addr, "")
	fails := func(name string, args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
		if err == nil || ctx.Err() != nil {
			t.Fatalf("%s with the one connection taken: %v, want a failure at once:\n%s", name, err, out)
		}
		return string(out)
	}
	if out := fails(nbdinfo, nbdURI(addr.String())); !strings.Contains(out, "server replied with error") {
		t.Errorf("nbdinfo:\n%s", out)
	}
	if out := fails(qemuImg, "info", nbdURI(addr.String())); !strings.Contains(out, "too many connections: this server serves 1 at once") {
		t.Errorf("qemu-img info does not print the reason:\n%s", out)
	}
	if st := s.Stats(); st.Refused != 2 {
		t.Fatalf("stats %+v: want 2 refused", st)
	}
	held.disconnect()
	waitServing(t, s, 0)
	if out := run(t, nbdinfo, nbdURI(addr.String())); !strings.Contains(out, "export-size: 1048576") {
		t.Fatalf("nbdinfo after the slot freed:\n%s", out)
	}
	if out := run(t, qemuImg, "info", nbdURI(addr.String())); !strings.Contains(out, "virtual size: 1 MiB") {
		t.Fatalf("qemu-img info after the slot freed:\n%s", out)
	}
}
