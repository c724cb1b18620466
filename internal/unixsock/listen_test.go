package unixsock

import (
	"bytes"
	"errors"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestFreshPath(t *testing.T) {
	p := filepath.Join(t.TempDir(), "s.sock")
	l, err := Listen("test", p)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("socket file: %v %v", fi, err)
	}
	l.Close()
	if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket left after Close: %v", err)
	}
}

func TestRegularFileIsKept(t *testing.T) {
	p := filepath.Join(t.TempDir(), "data")
	want := bytes.Repeat([]byte("precious"), 1<<16)
	os.WriteFile(p, want, 0o644)
	_, err := Listen("test", p)
	if !errors.Is(err, ErrNotSocket) {
		t.Fatalf("Listen over a regular file = %v; want ErrNotSocket", err)
	}
	t.Log(err)
	got, _ := os.ReadFile(p)
	if !bytes.Equal(got, want) {
		t.Fatal("regular file changed")
	}
	d := filepath.Join(t.TempDir(), "dir")
	os.Mkdir(d, 0o755)
	if _, err := Listen("test", d); !errors.Is(err, ErrNotSocket) {
		t.Fatalf("Listen over a directory = %v", err)
	}
}

func TestLiveSocketIsInUse(t *testing.T) {
	p := filepath.Join(t.TempDir(), "s.sock")
	first, err := Listen("test", p)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := first.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	_, err = Listen("test", p)
	if !errors.Is(err, ErrInUse) || !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("second Listen = %v; want ErrInUse", err)
	}
	// The first server's socket is still there and still answers.
	c, err := net.Dial("unix", p)
	if err != nil {
		t.Fatalf("first server lost its socket: %v", err)
	}
	c.Close()
	first.Close()
	<-done
}

func TestStaleSocketIsReplaced(t *testing.T) {
	p := filepath.Join(t.TempDir(), "s.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: p, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close() // the file stays, nobody answers
	if _, err := os.Lstat(p); err != nil {
		t.Fatal(err)
	}
	l2, err := Listen("test", p)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	l2.Close()
}

func TestCloseLeavesAnotherServersSocket(t *testing.T) {
	p := filepath.Join(t.TempDir(), "s.sock")
	a, err := Listen("test", p)
	if err != nil {
		t.Fatal(err)
	}
	// Someone removes our socket and a second server takes the path.
	os.Remove(p)
	b, err := Listen("test", p)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	a.Close()
	if _, err := os.Lstat(p); err != nil {
		t.Fatalf("closing the first listener removed the second's socket: %v", err)
	}
}

// A live server whose accept queue is full refuses a connection with
// EAGAIN, not ECONNREFUSED: it is not stale but in use, and its socket is
// kept.
func TestBusySocketIsKept(t *testing.T) {
	p := filepath.Join(t.TempDir(), "s.sock")
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: p}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	before, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	// Fill the accept queue (nobody accepts) until a dial is refused.
	var busy error
	for range 64 {
		c, err := net.Dial("unix", p)
		if err != nil {
			busy = err
			break
		}
		defer c.Close()
	}
	if !errors.Is(busy, syscall.EAGAIN) {
		t.Fatalf("dialling a server that never accepts ended with %v; want EAGAIN", busy)
	}
	l, err := Listen("test", p)
	if err == nil {
		l.Close()
		t.Fatal("Listen took over the path of a live server with a full accept queue")
	}
	if !errors.Is(err, ErrInUse) || !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("Listen over a busy live server = %v; want ErrInUse", err)
	}
	after, err := os.Lstat(p)
	if err != nil || !os.SameFile(before, after) {
		t.Fatalf("the busy server's socket was replaced or removed: %v", err)
	}
}

// Listeners racing for one fresh path: exactly one gets it, the others
// get ErrInUse, and the winner's socket is the one at the path.
func TestRacingListenersOneWins(t *testing.T) {
	const rounds, racers = 50, 4
	dir := t.TempDir()
	for r := range rounds {
		p := filepath.Join(dir, "s"+string(rune('a'+r%26))+string(rune('a'+r/26)))
		start := make(chan struct{})
		type result struct {
			l   net.Listener
			err error
		}
		res := make(chan result, racers)
		for range racers {
			go func() {
				<-start
				l, err := Listen("test", p)
				res <- result{l, err}
			}()
		}
		close(start)
		var won []net.Listener
		for range racers {
			x := <-res
			switch {
			case x.err == nil:
				won = append(won, x.l)
			case !errors.Is(x.err, ErrInUse):
				t.Errorf("round %d: a losing Listen failed with %v; want ErrInUse", r, x.err)
			}
		}
		for _, l := range won {
			l.Close()
		}
		if len(won) != 1 {
			t.Fatalf("round %d: %d of %d racing listeners got the path; want exactly 1", r, len(won), racers)
		}
	}
}

// A datagram socket bound at the path (another program's, alive) refuses
// a stream connection with EPROTOTYPE, not ECONNREFUSED: it is not a
// stale stream socket, and it is kept.
func TestDatagramSocketIsKept(t *testing.T) {
	p := filepath.Join(t.TempDir(), "d.sock")
	d, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: p, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	before, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	l, err := Listen("test", p)
	if err == nil {
		l.Close()
		t.Fatal("Listen replaced a live datagram socket")
	}
	t.Log(err)
	after, err := os.Lstat(p)
	if err != nil || !os.SameFile(before, after) {
		t.Fatalf("the datagram socket was replaced or removed: %v", err)
	}
}
