package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dmlog/dmlog/internal/fixture"
)

// The test binary runs main() when re-executed with this variable set, so
// exit codes and signals are tested on the real command.
const mainEnv = "DMLOG_NBD_SERVER_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(mainEnv) != "" {
		os.Args = append([]string{"nbd-server"}, strings.Fields(os.Getenv(mainEnv))...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// syncBuf collects a command's output while the test reads it.
type syncBuf = fixture.SyncBuffer

// server is an in-process nbd-server run.
type server struct {
	sock, ctl string
	out       *syncBuf
	cancel    context.CancelFunc
	done      chan error
	stopped   bool
}

// start runs the command in-process with args and waits until it serves.
func start(t *testing.T, args ...string) *server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &server{out: &syncBuf{}, cancel: cancel, done: make(chan error, 1)}
	addrs := make(chan [2]string, 1)
	go func() {
		s.done <- run(ctx, args, s.out, func(l, c net.Addr) {
			a := [2]string{l.String(), ""}
			if c != nil {
				a[1] = c.String()
			}
			addrs <- a
		})
	}()
	select {
	case a := <-addrs:
		s.sock, s.ctl = a[0], a[1]
	case err := <-s.done:
		cancel()
		t.Fatalf("nbd-server %q: %v\n%s", args, err, s.out)
	case <-time.After(20 * time.Second):
		cancel()
		t.Fatalf("nbd-server %q did not start", args)
	}
	t.Cleanup(func() {
		if !s.stopped {
			s.stop(t)
		}
	})
	return s
}

// stop is SIGTERM for an in-process run: it returns run's error.
func (s *server) stop(t *testing.T) error {
	t.Helper()
	s.stopped = true
	s.cancel()
	select {
	case err := <-s.done:
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("nbd-server did not stop:\n%s", s.out)
		return nil
	}
}

func (s *server) uri() string { return "nbd+unix:///?socket=" + s.sock }

// control sends one line to the control socket and returns the reply.
func (s *server) control(t *testing.T, line string) string {
	t.Helper()
	c, err := net.DialTimeout("unix", s.ctl, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte(line + "\n")); err != nil {
		t.Fatal(err)
	}
	reply, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("control %q: %v", line, err)
	}
	return strings.TrimSuffix(reply, "\n")
}

// tool finds an external client or skips the test.
var tool = fixture.Tool

func runTool(t *testing.T, name string, args ...string) string {
	t.Helper()
	out := fixture.Run(t, 60*time.Second, name, args...)
	if strings.Contains(out, "Pattern verification failed") { // qemu-io exits 0 on a mismatch
		t.Fatalf("%s %s:\n%s", name, strings.Join(args, " "), out)
	}
	return out
}

// awaitLine reads r (a command's output) until a line contains want,
// failing the test after 20 s or if r ends first; the rest of r is read
// and discarded in the background so the command never blocks on it.
func awaitLine(t *testing.T, r io.Reader, want string) {
	t.Helper()
	found := make(chan bool, 1)
	go func() {
		lines := bufio.NewScanner(r)
		for lines.Scan() {
			if strings.Contains(lines.Text(), want) {
				found <- true
				io.Copy(io.Discard, r)
				return
			}
		}
		found <- false
	}()
	select {
	case ok := <-found:
		if !ok {
			t.Fatalf("the command's output ended without a line containing %q", want)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("no line containing %q within 20 s", want)
	}
}

func TestUsage(t *testing.T) {
	var out syncBuf
	if err := run(context.Background(), []string{"-h"}, &out, nil); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
	for _, want := range []string{"-mirror", "-record", "-control", "nbd-client -u PATH /dev/nbd0", "mark NAME", "SIGTERM", "-max-conns"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("usage lacks %q", want)
		}
	}
	dir := t.TempDir()
	sock := "unix:" + filepath.Join(dir, "s")
	for _, args := range [][]string{
		{"-bogus"},
		{"-file", "x"},
		{"-listen", sock},
		{"-listen", sock, "-file", "a", "-record", "b", "-log", "c"},
		{"-listen", sock, "-mirror", "a", "-log", "l"},
		{"-listen", sock, "-mirror", "a,b"},
		{"-listen", sock, "-mirror", "a,b", "-log", "l", "-region", "3000"},
		{"-listen", sock, "-record", "a", "-log", "l", "-sector", "100"},
		{"-listen", sock, "-file", "a", "-max-conns", "0"},
		{"-listen", sock, "-file", "a", "-size", "12XB"},
		{"-listen", "tcp:10.1.2.3:10809", "-file", "a"},
		{"-listen", "ftp:x", "-file", "a"},
		{"-listen", sock, "-control", "tcp:127.0.0.1:1", "-file", "a"},
		{"-listen", sock, "-file", "a", "extra"},
	} {
		err := run(context.Background(), args, &out, nil)
		var ue usageError
		if !errors.As(err, &ue) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: %v, want a one-line usage error", args, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "s")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused run left its socket: %v", err)
	}
}

// TestExitCodes runs the real main: -h exits 0, a bad flag 2 with one line.
func TestExitCodes(t *testing.T) {
	for _, tc := range []struct {
		args  string
		code  int
		lines int
	}{{"-h", 0, -1}, {"-bogus", 2, 1}, {"-listen unix:/nonexistent/dir/s -file x", 1, 1}} {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), mainEnv+"="+tc.args)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tc.code {
			t.Errorf("%s: exit %d, want %d (stderr %q)", tc.args, code, tc.code, stderr.String())
		}
		if n := strings.Count(stderr.String(), "\n"); tc.lines >= 0 && n != tc.lines {
			t.Errorf("%s: %d stderr lines, want %d: %q", tc.args, n, tc.lines, stderr.String())
		}
	}
}

// TestSIGTERM runs the real command, serves a write, and stops it with
// SIGTERM: exit 0, the socket removed, the write on the file.
func TestSIGTERM(t *testing.T) {
	qemuIO := tool(t, "qemu-io", "qemu-utils")
	dir := t.TempDir()
	sock, img := filepath.Join(dir, "s"), filepath.Join(dir, "img")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), mainEnv+"=-listen unix:"+sock+" -file "+img+" -size 4MiB")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	awaitLine(t, stdout, "listening on")
	runTool(t, qemuIO, "-f", "raw", "-c", "write -P 0x42 4k 4k", "nbd+unix:///?socket="+sock)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err := <-waited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v, stderr %q", err, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket left behind: %v", err)
	}
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b[4096:8192], bytes.Repeat([]byte{0x42}, 4096)) {
		t.Fatal("the write did not reach the file")
	}
}

func TestRefusesLiveSocketsAndLockedFiles(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "img")
	s := start(t, "-listen", "unix:"+filepath.Join(dir, "s"), "-file", img, "-size", "1MiB")
	var out syncBuf
	err := run(context.Background(), []string{"-listen", "unix:" + s.sock, "-file", filepath.Join(dir, "other"), "-size", "1MiB"}, &out, nil)
	if err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second server on a live socket: %v", err)
	}
	err = run(context.Background(), []string{"-listen", "unix:" + filepath.Join(dir, "s2"), "-file", img}, &out, nil)
	if err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second server of a served file: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "s2")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the refused run left its socket: %v", err)
	}
	plain := filepath.Join(dir, "plain")
	os.WriteFile(plain, []byte("keep me"), 0o600)
	err = run(context.Background(), []string{"-listen", "unix:" + plain, "-file", filepath.Join(dir, "x"), "-size", "1MiB"}, &out, nil)
	if b, _ := os.ReadFile(plain); err == nil || string(b) != "keep me" {
		t.Fatalf("listening on a regular file's path: %v (content %q)", err, b)
	}
	// A log that is not a disk log is not overwritten; nor is a full
	// log-writes log without -overwrite-log.
	err = run(context.Background(), []string{"-listen", "unix:" + filepath.Join(dir, "s3"), "-mirror",
		filepath.Join(dir, "l1") + "," + filepath.Join(dir, "l2"), "-log", plain, "-size", "1MiB"}, &out, nil)
	if b, _ := os.ReadFile(plain); err == nil || !strings.Contains(err.Error(), "not a dm disk log") || string(b) != "keep me" {
		t.Fatalf("mirror log on a foreign file: %v (content %q)", err, b)
	}
	for _, leg := range []string{"l1", "l2"} {
		if _, err := os.Stat(filepath.Join(dir, leg)); err == nil {
			t.Fatalf("refused mirror left leg %s behind", leg)
		}
	}
	err = run(context.Background(), []string{"-listen", "unix:" + filepath.Join(dir, "s4"), "-record", img + "x",
		"-size", "1MiB", "-log", plain}, &out, nil)
	if b, _ := os.ReadFile(plain); err == nil || !strings.Contains(err.Error(), "refusing to overwrite") || string(b) != "keep me" {
		t.Fatalf("recorder log on a non-empty file: %v (content %q)", err, b)
	}
	if err := s.stop(t); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(s.sock); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket left after stop: %v", err)
	}
}
