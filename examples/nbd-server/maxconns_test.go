package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// With -max-conns 1 and one client served, qemu-img is refused with the
// reason; once that client leaves, qemu-img is served; the stop line
// counts the refusals.
func TestMaxConnsFlag(t *testing.T) {
	qemuImg := tool(t, "qemu-img", "qemu-utils")
	dir := t.TempDir()
	s := start(t, "-listen", "unix:"+filepath.Join(dir, "s"), "-file", filepath.Join(dir, "img"), "-size", "1MiB", "-max-conns", "1")

	// A client in the transmission phase.
	held, _, err := dialExport(s.sock)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, qemuImg, "info", s.uri()).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "too many connections: this server serves 1 at once") {
		t.Fatalf("qemu-img info with the one slot taken: %v\n%s", err, out)
	}
	held.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, err := exec.CommandContext(ctx, qemuImg, "info", s.uri()).CombinedOutput()
		if err == nil && strings.Contains(string(out), "virtual size: 1 MiB") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("qemu-img info once the client left: %v\n%s", err, out)
		}
		time.Sleep(10 * time.Millisecond) // the server notices the end of the held connection
	}
	if err := s.stop(t); err != nil {
		t.Fatal(err)
	}
	// 1 refused, or more if a retry above came before the server saw the
	// held connection end.
	if !strings.Contains(s.out.String(), " refused: -max-conns)") {
		t.Fatalf("the stop line does not count the refusal:\n%s", s.out)
	}
}
