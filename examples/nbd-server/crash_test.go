package main

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// dialExport connects to the server's unix socket and enters the
// transmission phase of the default export with NBD_OPT_EXPORT_NAME "" (a
// client in a few lines); the connection fails rather than hangs after
// 60 s.
func dialExport(sock string) (net.Conn, *bufio.Reader, error) {
	c, err := net.Dial("unix", sock)
	if err != nil {
		return nil, nil, err
	}
	c.SetDeadline(time.Now().Add(60 * time.Second)) // a stuck server fails the test rather than hanging it
	r := bufio.NewReader(c)
	msg := binary.BigEndian.AppendUint32(nil, 3) // fixed newstyle, no zeroes
	msg = binary.BigEndian.AppendUint64(msg, 0x49484156454f5054)
	msg = binary.BigEndian.AppendUint32(msg, 1) // NBD_OPT_EXPORT_NAME ""
	msg = binary.BigEndian.AppendUint32(msg, 0)
	if _, err := io.ReadFull(r, make([]byte, 18)); err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("greeting: %w", err)
	}
	if _, err := c.Write(msg); err != nil {
		c.Close()
		return nil, nil, err
	}
	if _, err := io.ReadFull(r, make([]byte, 10)); err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("export information: %w", err)
	}
	return c, r, nil
}

// writeLoop writes 64 KiB blocks (4 in flight) across the first size bytes
// of the export at sock until stop is closed or the connection fails; it
// sends the number of acknowledged writes on acked after each one.
func writeLoop(sock string, size int64, stop <-chan struct{}, acked chan<- int) error {
	c, r, err := dialExport(sock)
	if err != nil {
		return err
	}
	defer c.Close()
	const n = 64 << 10
	req := make([]byte, 28+n)
	binary.BigEndian.PutUint32(req, 0x25609513)
	binary.BigEndian.PutUint16(req[6:], 1)
	binary.BigEndian.PutUint32(req[24:], n)
	slots := make(chan struct{}, 4)
	errc := make(chan error, 1)
	go func() {
		var h [16]byte
		for i := 1; ; i++ {
			if _, err := io.ReadFull(r, h[:]); err != nil {
				errc <- err
				return
			}
			<-slots
			select {
			case acked <- i:
			default:
			}
		}
	}()
	for i := int64(0); ; i++ {
		select {
		case <-stop:
			return nil
		case err := <-errc:
			return err
		case slots <- struct{}{}:
		}
		binary.BigEndian.PutUint64(req[16:], uint64(i*n%size))
		for j := 28; j < len(req); j += 4096 {
			req[j] = byte(i)
		}
		if _, err := c.Write(req); err != nil {
			return err
		}
	}
}

var inSync = regexp.MustCompile(` (\d+)/(\d+) \d+ [AD]+ `)

// TestMirrorCrashResync kills a serving mirror (the real command, SIGKILL)
// while writes are in flight, serves it again, waits (on the control
// socket's status) until the resync has brought every region in sync, and
// checks the legs are identical.
func TestMirrorCrashResync(t *testing.T) {
	dir := t.TempDir()
	a, b, logf := filepath.Join(dir, "a"), filepath.Join(dir, "b"), filepath.Join(dir, "log")
	sock, ctl := filepath.Join(dir, "s"), filepath.Join(dir, "ctl")
	args := "-listen unix:" + sock + " -mirror " + a + "," + b + " -log " + logf + " -size 8MiB -region 64KiB -control unix:" + ctl
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), mainEnv+"="+args)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	awaitLine(t, stdout, "listening on")

	stop, acked := make(chan struct{}), make(chan int, 1)
	werr := make(chan error, 1)
	go func() { werr <- writeLoop(sock, 8<<20, stop, acked) }()
	deadline := time.After(20 * time.Second)
	for n := 0; n < 200; {
		select {
		case n = <-acked:
		case err := <-werr:
			t.Fatalf("writer: %v", err)
		case <-deadline:
			t.Fatalf("only %d writes acknowledged", n)
		}
	}
	cmd.Process.Kill() // SIGKILL with writes in flight
	cmd.Wait()
	close(stop)
	<-werr
	os.Remove(sock) // a dead server's socket is stale; unixsock would replace it anyway

	s := start(t, strings.Fields(args)...)
	out := s.out.String()
	if !strings.Contains(out, "regions dirty") && !strings.Contains(out, "log is clean") {
		t.Fatalf("restart did not report the log's state:\n%s", out)
	}
	t.Logf("restart: %s", strings.SplitN(out, "\n", 2)[0])
	for end := time.Now().Add(30 * time.Second); ; {
		st := s.control(t, "status")
		m := inSync.FindStringSubmatch(st)
		if m != nil && m[1] == m[2] {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("resync not done: %s\n%s", st, s.out)
		}
		time.Sleep(20 * time.Millisecond) // polling the resync's progress through the control socket
	}
	if err := s.stop(t); err != nil {
		t.Fatal(err)
	}
	filesEqual(t, a, b)
	if strings.Contains(out, "regions dirty") && !strings.Contains(s.out.String(), "resync done") {
		t.Fatalf("no resync progress printed:\n%s", s.out)
	}
}
