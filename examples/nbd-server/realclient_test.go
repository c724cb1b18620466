package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/dmlog/dmlog/logwrites"
)

// copySize is the image copied in and out by TestCopyBitExact: 256 MiB,
// or 32 MiB with -short or under the race detector (DMLOG_LONG=1 keeps
// 256 MiB there).
func copySize(t *testing.T) int64 {
	if testing.Short() || (raceEnabled && os.Getenv("DMLOG_LONG") == "") {
		t.Logf("copying 32 MiB (-short or -race; DMLOG_LONG=1 without -short copies 256 MiB)")
		return 32 << 20
	}
	return 256 << 20
}

// randomImage writes a file of n bytes from a seeded generator
// (DMLOG_SEED overrides the default seed 1).
func randomImage(t *testing.T, path string, n int64) {
	t.Helper()
	seed := uint64(1)
	if s := os.Getenv("DMLOG_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("DMLOG_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("image seed %d (DMLOG_SEED)", seed)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), byte(seed >> 24)})
	b := make([]byte, n)
	r.Read(b)
	copy(b[n/2:], make([]byte, n/4)) // a zero run, for sparse-aware copiers
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func filesEqual(t *testing.T, a, b string) {
	t.Helper()
	x, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(x, y) {
		i := 0
		for i < len(x) && i < len(y) && x[i] == y[i] {
			i++
		}
		t.Fatalf("%s and %s differ (sizes %d, %d; first difference at byte %d)", a, b, len(x), len(y), i)
	}
}

func TestNbdinfoShowsSizeAndFlags(t *testing.T) {
	nbdinfo := tool(t, "nbdinfo", "libnbd-bin")
	dir := t.TempDir()
	s := start(t, "-listen", "unix:"+filepath.Join(dir, "s"), "-record", filepath.Join(dir, "dev"), "-size", "8MiB",
		"-log", filepath.Join(dir, "log"))
	out := runTool(t, nbdinfo, s.uri())
	for _, want := range []string{"export-size: 8388608", "can_flush: true", "can_fua: true", "can_trim: true",
		"can_zero: true", "can_multi_conn: true", "block_size_minimum: 512", "block_size_maximum: 33554432"} {
		if !strings.Contains(out, want) {
			t.Errorf("nbdinfo lacks %q:\n%s", want, out)
		}
	}
}

// TestCopyBitExact copies an image into each kind of export with one tool
// and out with another, and compares.
func TestCopyBitExact(t *testing.T) {
	qemuImg := tool(t, "qemu-img", "qemu-utils")
	nbdcopy := tool(t, "nbdcopy", "libnbd-bin")
	n := copySize(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src.img")
	randomImage(t, src, n)
	size := strconv.FormatInt(n, 10)
	for _, kind := range []string{"file", "mirror"} {
		t.Run(kind, func(t *testing.T) {
			d := t.TempDir()
			args := []string{"-listen", "unix:" + filepath.Join(d, "s"), "-size", size}
			if kind == "file" {
				args = append(args, "-file", filepath.Join(d, "dev"))
			} else {
				args = append(args, "-mirror", filepath.Join(d, "a")+","+filepath.Join(d, "b"), "-log", filepath.Join(d, "log"))
			}
			s := start(t, args...)
			runTool(t, qemuImg, "convert", "-n", "-f", "raw", "-O", "raw", src, s.uri())
			out := filepath.Join(d, "out.img")
			runTool(t, nbdcopy, s.uri(), out)
			filesEqual(t, src, out)
			runTool(t, nbdcopy, src, s.uri()) // and in with nbdcopy, out with qemu-img
			out2 := filepath.Join(d, "out2.img")
			runTool(t, qemuImg, "convert", "-f", "raw", "-O", "raw", s.uri(), out2)
			filesEqual(t, src, out2)
			if err := s.stop(t); err != nil {
				t.Fatal(err)
			}
			if kind == "file" {
				filesEqual(t, src, filepath.Join(d, "dev"))
			} else {
				filesEqual(t, src, filepath.Join(d, "a"))
				filesEqual(t, filepath.Join(d, "a"), filepath.Join(d, "b"))
			}
		})
	}
}

// TestRecordQemuIOReplays records a qemu-io session with a mark placed
// through the control socket, then checks the log: the FUA, flush and mark
// entries come in the order the client saw them acknowledged, and
// replaying the log onto a zeroed device gives exactly the device.
func TestRecordQemuIOReplays(t *testing.T) {
	qemuIO := tool(t, "qemu-io", "qemu-utils")
	dir := t.TempDir()
	dev, logf := filepath.Join(dir, "dev"), filepath.Join(dir, "log")
	s := start(t, "-listen", "unix:"+filepath.Join(dir, "s"), "-record", dev, "-size", "8MiB", "-log", logf,
		"-control", "unix:"+filepath.Join(dir, "ctl"))
	if r := s.control(t, "mark"); !strings.HasPrefix(r, "error:") {
		t.Fatalf("mark without a name: %q", r)
	}
	if r := s.control(t, "frobnicate"); !strings.HasPrefix(r, "error:") {
		t.Fatalf("unknown command: %q", r)
	}
	if r := s.control(t, "status"); !strings.HasPrefix(r, "ok log-writes ") {
		t.Fatalf("status: %q", r)
	}
	if r := s.control(t, "mark start"); r != "ok" {
		t.Fatalf("mark: %q", r)
	}
	// -t writeback: qemu-io's default writethrough cache makes every write FUA.
	runTool(t, qemuIO, "-f", "raw", "-t", "writeback",
		"-c", "write -P 1 0 64k",
		"-c", "write -f -P 2 1M 4k",
		"-c", "flush",
		"-c", "write -P 3 2M 64k",
		"-c", "discard 0 4k",
		s.uri())
	if r := s.control(t, "mark mkfs"); r != "ok" {
		t.Fatalf("mark: %q", r)
	}
	runTool(t, qemuIO, "-f", "raw", "-t", "writeback",
		"-c", "write -z 3M 64k",
		"-c", "write -f -P 4 4M 8k",
		"-c", "read -P 2 1M 4k",
		"-c", "read -P 0 0 4k",
		s.uri())
	if err := s.stop(t); err != nil {
		t.Fatal(err)
	}

	lf, err := os.Open(logf)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	l, err := logwrites.Open(lf)
	if err != nil {
		t.Fatal(err)
	}
	var seq []string
	for e, err := range l.Entries() {
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case e.Flags&logwrites.FlagMark != 0:
			seq = append(seq, "mark:"+e.Mark)
		case e.Flags&logwrites.FlagFUA != 0:
			seq = append(seq, fmt.Sprintf("fua@%d", e.Offset(512)))
		case e.Flags&logwrites.FlagFlush != 0 && e.NrSectors == 0:
			seq = append(seq, "flush")
		}
	}
	got := strings.Join(seq, " ")
	t.Logf("log entries (FUA, flush, mark): %s", got)
	// qemu-io flushes when it closes the image.
	want := "mark:start fua@1048576 flush flush mark:mkfs fua@4194304 flush mark:dm-log-writes-end"
	if got != want {
		t.Fatalf("FUA/flush/mark order\n got %s\nwant %s", got, want)
	}
	replayed := filepath.Join(dir, "replayed")
	out, err := os.Create(replayed)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if err := out.Truncate(8 << 20); err != nil {
		t.Fatal(err)
	}
	if err := logwrites.Replay(l, out, logwrites.ReplayOptions{}); err != nil {
		t.Fatal(err)
	}
	filesEqual(t, dev, replayed)
}

// TestMirrorServedOverNBD writes through a served mirror with qemu-io,
// stops it, checks the legs are identical and hold the data, then serves
// the same mirror again (its log reopened) and verifies the data and that
// no resync was needed.
func TestMirrorServedOverNBD(t *testing.T) {
	qemuIO := tool(t, "qemu-io", "qemu-utils")
	dir := t.TempDir()
	a, b, logf := filepath.Join(dir, "a"), filepath.Join(dir, "b"), filepath.Join(dir, "log")
	args := []string{"-listen", "unix:" + filepath.Join(dir, "s"), "-mirror", a + "," + b, "-log", logf,
		"-size", "16MiB", "-region", "64KiB", "-control", "unix:" + filepath.Join(dir, "ctl")}
	s := start(t, args...)
	if !strings.Contains(s.out.String(), "nothing to resync") {
		t.Fatalf("first run output:\n%s", s.out)
	}
	if r := s.control(t, "mark x"); !strings.HasPrefix(r, "error: marks need -record") {
		t.Fatalf("mark on a mirror: %q", r)
	}
	runTool(t, qemuIO, "-f", "raw",
		"-c", "write -P 0x11 0 1M",
		"-c", "write -f -P 0x22 5M 128k",
		"-c", "flush",
		"-c", "discard 8M 1M",
		"-c", "write -z 10M 64k",
		"-c", "aio_write -P 0x33 12M 64k",
		"-c", "aio_write -P 0x44 13M 64k",
		"-c", "aio_flush",
		s.uri())
	if err := s.stop(t); err != nil {
		t.Fatal(err)
	}
	filesEqual(t, a, b)
	s = start(t, args...)
	if !strings.Contains(s.out.String(), "log is clean") {
		t.Fatalf("second run output:\n%s", s.out)
	}
	runTool(t, qemuIO, "-f", "raw", "-c", "read -P 0x11 0 1M", "-c", "read -P 0x22 5M 128k", "-c", "read -P 0 8M 1M",
		"-c", "read -P 0x44 13M 64k", s.uri())
}
