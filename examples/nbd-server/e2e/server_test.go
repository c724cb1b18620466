package e2e

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dmlog/dmlog/internal/nbd"
)

// nbdServer is dmlog's NBD server serving one device on a unix socket in
// the test's temporary directory.
type nbdServer struct {
	srv   *nbd.Server
	sock  string
	done  chan error
	stats nbd.Stats // counters at close

	mu    sync.Mutex
	logs  []string // the server's first log lines
	nlogs int
}

// logf keeps the first lines the server logs (after a power cut every
// request fails and is logged).
func (s *nbdServer) logf(format string, a ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nlogs++
	if len(s.logs) < 3 {
		s.logs = append(s.logs, fmt.Sprintf(format, a...))
	}
}

// logSummary returns the lines kept and how many there were.
func (s *nbdServer) logSummary() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprintf("%d lines: %s", s.nlogs, strings.Join(s.logs, "; "))
}

// serve starts the NBD server on dev (size bytes); t.Cleanup closes it.
func serve(t *testing.T, dev nbd.Backend, size int64) *nbdServer {
	t.Helper()
	s := &nbdServer{done: make(chan error, 1)}
	// qemu connects when it starts; the guest answers the greeting only
	// once booted (5 to 10 s, more on a loaded machine).
	srv, err := nbd.NewServer(nbd.Options{Logf: s.logf, HandshakeTimeout: 3 * time.Minute}, nbd.Export{Size: size, Dev: dev, MultiConn: true})
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "nbd.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	s.srv, s.sock = srv, sock
	go func() { s.done <- srv.Serve(l) }()
	t.Cleanup(func() { s.close(t) })
	return s
}

// close stops the server and waits for Serve to return.
func (s *nbdServer) close(t *testing.T) {
	if s.srv == nil {
		return
	}
	if err := s.srv.Close(); err != nil && !errors.Is(err, nbd.ErrServerClosed) {
		t.Errorf("closing the NBD server: %v", err)
	}
	if err := <-s.done; err != nil && !errors.Is(err, nbd.ErrServerClosed) {
		t.Errorf("NBD server: %v", err)
	}
	s.stats = s.srv.Stats()
	s.srv = nil
}
