package remote

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/dmlog/dmlog/dirtylog"
	"github.com/dmlog/dmlog/internal/accept"
)

// Defaults for ServerOptions.
const (
	DefaultDeadAfter        = 15 * time.Second
	DefaultFrameTimeout     = 30 * time.Second
	DefaultWriteTimeout     = 30 * time.Second
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultMaxRegions       = 1 << 24
	DefaultMaxLogs          = 1024
)

// ServerOptions configures a Server.
type ServerOptions struct {
	// Open resolves the log device named in a clustered-disk CTR (a path
	// or major:minor). If the device is an io.Closer it is closed when the
	// log is destroyed. Without Open, clustered-disk logs are refused.
	// A device holds one log at a time: a CTR for another UUID naming the
	// device of a hosted log is refused. Names are compared as written,
	// so an Open that accepts several names for one device must make
	// them one (or refuse all but one).
	Open func(name string) (dirtylog.Device, error)
	// LogicalBlockSize is the logical block size in bytes of the disk log
	// devices (0 for 512 bytes).
	LogicalBlockSize int
	// TLS is required to serve a TCP listener: the server requires and
	// verifies a client certificate (tls.RequireAndVerifyClientCert, with
	// ClientCAs from this config) and speaks TLS 1.3 only, whatever the
	// config says. Unix-socket listeners are served in the clear.
	TLS *tls.Config
	// DeadAfter is how long a node may stay disconnected without having
	// suspended before it is declared dead: the regions it marks become
	// out of sync (resync work) and a recovery claim it holds is released.
	// Zero means DefaultDeadAfter; a negative value never declares a node
	// dead (cmirrord's behaviour: its regions stay dirty).
	//
	// It is also the grace a clustered-disk log that already existed on
	// its device (the server restarted) gives its nodes to reconnect and
	// replay their marks: no resync work is handed out before then
	// (DefaultDeadAfter if DeadAfter is negative).
	DeadAfter time.Duration
	// FrameTimeout bounds the time to receive the rest of a frame once its
	// first byte arrived; a peer stalling mid-frame is dropped. Idle peers
	// (between frames) are never dropped. Zero means DefaultFrameTimeout.
	FrameTimeout time.Duration
	// WriteTimeout bounds writing a reply; a peer that does not read is
	// dropped. (The deadline is renewed when half of it is used up, so a
	// blocked write is given between WriteTimeout/2 and WriteTimeout.)
	// Zero means DefaultWriteTimeout.
	WriteTimeout time.Duration
	// HandshakeTimeout bounds the TLS handshake. Zero means
	// DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// MaxRegions caps the regions of one log, so that a client cannot make
	// the server allocate huge bitmaps. Zero means DefaultMaxRegions
	// (16 Mi regions: 2 MiB per bitmap).
	MaxRegions uint64
	// MaxLogs caps how many logs the server hosts at once. Zero means
	// DefaultMaxLogs.
	MaxLogs int
	// Logger receives connection and cluster events (joins, deaths,
	// refused peers). Nil discards them.
	Logger *slog.Logger
}

// Server hosts clustered dirty-region logs, each named by a UUID, for
// clients speaking the userspace-log protocol over stream connections.
// Every log is backed by a dirtylog core log ("clustered-core") or disk log
// ("clustered-disk", the kernel's on-disk format) and kept coherent for
// all the nodes using it (see the package documentation).
//
// A Server is safe for concurrent use: Serve may run on several listeners
// at once, and Close may be called from any goroutine.
type Server struct {
	opts ServerOptions
	log  *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc

	mu        sync.Mutex
	closed    bool
	listeners map[net.Listener]struct{}
	conns     map[*serverConn]struct{}
	logs      map[string]*hostedLog
	creating  map[string]*creation // logs being built, outside mu
	nextConn  uint64
	wg        sync.WaitGroup

	trace func(h *Header, p []byte) // test hook: sees every well-formed request
	// Test hooks for the death rules, set before Serve: afterFunc arms a
	// death timer and now reads the clock of the restart grace
	// (time.AfterFunc and time.Now unless a test injects a clock it
	// advances itself); detached, if set, sees each disconnection of a
	// member and whether a death timer was armed for it (it is called
	// with the log's lock held and must not call back into the server).
	afterFunc func(d time.Duration, f func()) stopper
	now       func() time.Time
	detached  func(uuid string, n NodeID, armed bool)
}

// stopper is a death timer: *time.Timer, or a test's.
type stopper interface{ Stop() bool }

func realAfterFunc(d time.Duration, f func()) stopper { return time.AfterFunc(d, f) }

// NewServer returns a server with options o. It does nothing until Serve.
func NewServer(o ServerOptions) *Server {
	if o.DeadAfter == 0 {
		o.DeadAfter = DefaultDeadAfter
	}
	if o.FrameTimeout <= 0 {
		o.FrameTimeout = DefaultFrameTimeout
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if o.MaxRegions == 0 {
		o.MaxRegions = DefaultMaxRegions
	}
	if o.MaxLogs <= 0 {
		o.MaxLogs = DefaultMaxLogs
	}
	lg := o.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{
		opts: o, log: lg, ctx: ctx, cancel: cancel,
		listeners: map[net.Listener]struct{}{},
		conns:     map[*serverConn]struct{}{},
		logs:      map[string]*hostedLog{},
		creating:  map[string]*creation{},
		afterFunc: realAfterFunc,
		now:       time.Now,
	}
}

// serverTLS returns the config the server really uses: mutual TLS 1.3.
func serverTLS(c *tls.Config) (*tls.Config, error) {
	if c == nil {
		return nil, ErrInsecure
	}
	c = c.Clone()
	c.MinVersion = tls.VersionTLS13
	c.MaxVersion = 0
	c.ClientAuth = tls.RequireAndVerifyClientCert
	if c.ClientCAs == nil {
		return nil, fmt.Errorf("%w: ServerOptions.TLS has no ClientCAs to verify clients against", ErrInsecure)
	}
	if len(c.Certificates) == 0 && c.GetCertificate == nil && c.GetConfigForClient == nil {
		return nil, fmt.Errorf("%w: ServerOptions.TLS has no server certificate", ErrInsecure)
	}
	return c, nil
}

// Serve accepts connections on l and serves each in its own goroutine
// until l fails or the server is closed; it then returns (ErrServerClosed
// after Close). Transient accept errors (too many open files, a
// connection aborted before it was accepted, a timeout) are logged and
// retried with backoff up to a second. A Unix-socket listener's socket file is made mode 0600
// (ListenUnix creates it so from the start). Any other listener is
// treated as network-facing: it requires ServerOptions.TLS and every
// connection must complete a mutual-TLS 1.3 handshake before a request is
// read. Serve closes l before returning.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		l.Close()
		return ErrServerClosed
	}
	var tcfg *tls.Config
	if ua, ok := l.Addr().(*net.UnixAddr); ok {
		if ua.Name != "" && ua.Name[0] != '@' {
			if err := os.Chmod(ua.Name, 0o600); err != nil {
				l.Close()
				return fmt.Errorf("remote: securing socket %s: %w", ua.Name, err)
			}
		}
	} else {
		c, err := serverTLS(s.opts.TLS)
		if err != nil {
			l.Close()
			return err
		}
		tcfg = c
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	s.log.Info("serving", "addr", l.Addr().String(), "tls", tcfg != nil)

	var backoff accept.Backoff
	for {
		nc, err := l.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			if closed || !accept.Transient(err) {
				delete(s.listeners, l)
			}
			s.mu.Unlock()
			if closed {
				return ErrServerClosed
			}
			if accept.Transient(err) {
				// Out of file descriptors, or a connection aborted
				// before it was accepted: back off and go on serving.
				// l stays registered, so Close can still close it.
				delay := backoff.Next()
				s.log.Warn("accept", "err", err, "retry_in", delay)
				select {
				case <-time.After(delay):
				case <-s.ctx.Done():
				}
				continue
			}
			l.Close()
			return fmt.Errorf("remote: accept on %s: %w", l.Addr(), err)
		}
		backoff.Reset()
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			nc.Close()
			return ErrServerClosed
		}
		s.nextConn++
		sc := &serverConn{srv: s, raw: nc, nc: nc, id: s.nextConn, members: map[memberKey]*hostedLog{}}
		s.conns[sc] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go sc.serve(tcfg)
	}
}

// Close stops every listener and connection, waits for their goroutines,
// stops the death timers and closes every backing log (a disk log flushes
// on close). It returns the backing logs' close errors. A second Close
// returns an error wrapping both ErrServerClosed and os.ErrClosed.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errAlreadyClosed
	}
	s.closed = true
	s.cancel()
	for l := range s.listeners {
		l.Close()
	}
	for c := range s.conns {
		c.raw.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()

	s.mu.Lock()
	logs := s.logs
	s.logs = map[string]*hostedLog{}
	s.mu.Unlock()
	var errs []error
	for _, hl := range logs {
		errs = append(errs, hl.destroy())
	}
	return errors.Join(errs...)
}

// Logs returns the UUIDs of the hosted logs.
func (s *Server) Logs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.logs))
	for u := range s.logs {
		out = append(out, u)
	}
	return out
}

func (s *Server) dropConn(sc *serverConn) {
	s.mu.Lock()
	delete(s.conns, sc)
	s.mu.Unlock()
}
