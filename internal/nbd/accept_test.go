package nbd

import (
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
)

// flakyListener fails its first Accept calls as a process out of file
// descriptors does.
type flakyListener struct {
	net.Listener
	fails atomic.Int32
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if l.fails.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "unix", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

// Serve goes on serving after transient Accept failures (EMFILE), logging
// them, instead of returning.
func TestServeSurvivesEMFILE(t *testing.T) {
	var log logLines
	s, err := NewServer(Options{Logf: log.logf}, Export{Size: 1 << 20, Dev: newMemDev(1 << 20)})
	if err != nil {
		t.Fatal(err)
	}
	l := &flakyListener{Listener: listenUnix(t)}
	l.fails.Store(3)
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	defer func() {
		s.Close()
		<-served
	}()
	c := dial(t, l.Addr(), "")
	if e, _ := c.do(cmdRead, 0, 0, 512, nil); e != 0 {
		t.Fatalf("read after three EMFILE accepts: errno %d", e)
	}
	if !log.has("too many open files; retrying in 20ms") {
		t.Errorf("log %q: want the retries", log.all())
	}
}
