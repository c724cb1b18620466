package nbd

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dmlog/dmlog/internal/accept"
)

// DefaultMaxPayload is the largest READ or WRITE payload served by default
// (32 MiB, the size the protocol asks every server to accept).
const DefaultMaxPayload = 32 << 20

// DefaultMaxConns is the number of connections served at once by default.
const DefaultMaxConns = 16

// MaxHandshakes is the most connections in the negotiation phase at once
// (each for at most Options.HandshakeTimeout); a connection accepted
// beyond it is closed at once, before the greeting, and counted in
// Stats.Refused. Negotiating costs a connection its buffers only (128
// KiB), so silent clients cannot hold the MaxConns slots.
const MaxHandshakes = 64

// Options configure a Server. It is a plain value; NewServer copies it.
type Options struct {
	// MaxPayload is the largest READ or WRITE length accepted and the
	// maximum advertised in NBD_INFO_BLOCK_SIZE. Larger reads are answered
	// with NBD_EINVAL; larger writes have their payload read and discarded
	// and are answered with NBD_EINVAL, so the connection stays usable.
	// Zero means DefaultMaxPayload.
	MaxPayload uint32
	// MaxInFlight bounds the requests running at once on one connection;
	// the connection stops reading requests while that many are running.
	// Zero means 64.
	MaxInFlight int
	// MaxBufferBytes bounds the payload bytes held by one connection's
	// requests in flight. Zero means max(64 MiB, MaxPayload).
	MaxBufferBytes int64
	// MaxConns bounds the connections in the transmission phase at once.
	// A client's NBD_OPT_GO beyond it is answered with NBD_REP_ERR_POLICY
	// and "too many connections ..." (the client may try again on the same
	// connection, or abort); an NBD_OPT_EXPORT_NAME beyond it, which cannot
	// be refused, ends the connection. Both count in Stats.Refused and are
	// logged. Connections still negotiating are bounded apart
	// (MaxHandshakes). Each connection in transmission may hold up to
	// MaxBufferBytes of payload. Zero means DefaultMaxConns.
	MaxConns int
	// HandshakeTimeout bounds the negotiation phase of a connection.
	// Zero means 30 s.
	HandshakeTimeout time.Duration
	// DrainTimeout bounds how long Close waits for a client to read the
	// replies of requests that were running when Close was called. Zero
	// means 10 s.
	DrainTimeout time.Duration
	// TLS, if set, requires clients to upgrade with NBD_OPT_STARTTLS before
	// they may list or open exports.
	TLS *tls.Config
	// Logf, if set, receives one line per connection event worth knowing
	// (a refused handshake, a backend error, a client dropped).
	Logf func(format string, args ...any)
}

func (o *Options) fill() {
	if o.MaxPayload == 0 {
		o.MaxPayload = DefaultMaxPayload
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = 64
	}
	if o.MaxBufferBytes <= 0 {
		o.MaxBufferBytes = max(64<<20, int64(o.MaxPayload))
	}
	if o.MaxBufferBytes < int64(o.MaxPayload) {
		o.MaxBufferBytes = int64(o.MaxPayload)
	}
	if o.MaxConns <= 0 {
		o.MaxConns = DefaultMaxConns
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = 30 * time.Second
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = 10 * time.Second
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
}

// Stats are a server's counters since NewServer, as returned by
// Server.Stats: a plain value (a snapshot), safe for concurrent use. Every
// request is counted when its reply is queued, so a client that has read a
// reply sees it counted.
type Stats struct {
	Connections int64 // connections accepted and greeted
	Active      int64 // of those, open now (negotiating or served)
	Serving     int64 // of those, in the transmission phase now (at most MaxConns)
	Refused     int64 // exports refused (MaxConns) and connections closed at accept (MaxHandshakes)
	Reads       int64 // NBD_CMD_READ requests that succeeded
	Writes      int64 // NBD_CMD_WRITE requests that succeeded (FUA ones included)
	FUAWrites   int64 // successful writes and write-zeroes with NBD_CMD_FLAG_FUA
	Flushes     int64 // NBD_CMD_FLUSH requests that succeeded
	Trims       int64 // NBD_CMD_TRIM requests that succeeded
	WriteZeroes int64 // NBD_CMD_WRITE_ZEROES requests that succeeded
	Errors      int64 // requests answered with an error
	BytesRead   int64 // bytes returned by reads
	BytesWrite  int64 // bytes written by writes (not write-zeroes)
	MaxInFlight int64 // most requests seen running at once on one connection
}

type counters struct {
	conns, active, serving, refused, reads, writes, fua, flushes, trims, zeroes, errs, bread, bwrite, maxInFlight atomic.Int64
}

// Server serves exports over the NBD protocol (fixed newstyle negotiation,
// simple replies). It is safe for concurrent use: Serve may run on several
// listeners at once, and Stats and Close may be called from any goroutine.
type Server struct {
	o       Options
	exports []Export

	mu          sync.Mutex
	closed      bool
	listeners   map[net.Listener]struct{}
	conns       map[*conn]struct{}
	handshaking int            // conns negotiating
	serving     int            // conns in transmission (admitted)
	closedLog   time.Time      // when the last "closed at accept" line was logged
	closedSince int            // connections closed at accept since then
	wg          sync.WaitGroup // connection goroutines

	c counters
}

// NewServer returns a server of the exports (at least one, names unique).
func NewServer(o Options, exports ...Export) (*Server, error) {
	o.fill()
	if len(exports) == 0 {
		return nil, fmt.Errorf("%w: no export given", ErrBadExport)
	}
	if o.MaxPayload < 4096 {
		return nil, fmt.Errorf("%w: maximum payload %d bytes, at least 4096 needed", ErrBadExport, o.MaxPayload)
	}
	s := &Server{o: o, listeners: map[net.Listener]struct{}{}, conns: map[*conn]struct{}{}}
	seen := map[string]bool{}
	for _, e := range exports {
		if err := e.check(o.MaxPayload); err != nil {
			return nil, err
		}
		if seen[e.Name] {
			return nil, fmt.Errorf("%w: two exports named %q", ErrBadExport, e.Name)
		}
		seen[e.Name] = true
		s.exports = append(s.exports, e)
	}
	return s, nil
}

// export finds the export a client names; "" falls back to the first.
func (s *Server) export(name string) *Export {
	for i := range s.exports {
		if s.exports[i].Name == name {
			return &s.exports[i]
		}
	}
	if name == "" {
		return &s.exports[0]
	}
	return nil
}

// Serve accepts connections on l and serves each on its own goroutines
// until Close (then it returns ErrServerClosed) or until Accept fails for
// good (then it returns that error). Transient Accept failures (out of
// file descriptors, a connection aborted before it was accepted) are
// logged and retried after a backoff of 5 ms doubling to 1 s. It closes l
// when it returns.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
		l.Close()
	}()
	var backoff accept.Backoff
	for {
		nc, err := l.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return ErrServerClosed
			}
			if accept.Transient(err) {
				// Out of descriptors, a connection aborted before it was
				// accepted: back off and go on serving.
				delay := backoff.Next()
				s.o.Logf("nbd: accept: %v; retrying in %v", err, delay)
				time.Sleep(delay)
				continue
			}
			return fmt.Errorf("nbd: accept: %w", err)
		}
		backoff.Reset()
		if !s.start(nc) {
			nc.Close()
			return ErrServerClosed
		}
	}
}

// start registers and serves a connection unless the server is closed
// (false), or closes it if MaxHandshakes are negotiating.
func (s *Server) start(nc net.Conn) bool {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return false
	}
	if s.handshaking >= MaxHandshakes {
		s.c.refused.Add(1)
		s.closedSince++
		var line string
		if now := time.Now(); now.Sub(s.closedLog) >= time.Second {
			// One line a second at most: a flood is one line, not one per connection.
			line = fmt.Sprintf("nbd: %s: closed at accept: %d connections negotiating (MaxHandshakes); %d closed since the last such line",
				nc.RemoteAddr(), s.handshaking, s.closedSince)
			s.closedLog, s.closedSince = now, 0
		}
		s.mu.Unlock()
		if line != "" {
			s.o.Logf("%s", line) // before the close: a client that sees it closed finds the line logged
		}
		nc.Close()
		return true
	}
	c := newConn(s, nc)
	s.conns[c] = struct{}{}
	s.handshaking++
	s.wg.Add(1)
	s.c.conns.Add(1)
	s.c.active.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		defer c.cancel()
		c.serve()
		s.mu.Lock()
		delete(s.conns, c)
		if c.admitted {
			s.serving--
			s.c.serving.Add(-1)
		} else {
			s.handshaking--
		}
		s.mu.Unlock()
		s.c.active.Add(-1)
	}()
	return true
}

// admit moves c from the negotiation to the transmission phase unless
// MaxConns connections are there already; it returns how many are.
func (s *Server) admit(c *conn) (int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.serving >= s.o.MaxConns {
		s.c.refused.Add(1)
		return s.serving, false
	}
	s.serving++
	s.handshaking--
	s.c.serving.Add(1)
	c.admitted = true
	return s.serving, true
}

// Close stops the listeners, stops reading new requests on every
// connection (requests still in a connection's read buffer are answered
// with NBD_ESHUTDOWN, not run), lets the requests already read finish and
// their replies go out (for at most Options.DrainTimeout to a client that
// does not read them), closes the connections and waits for every
// goroutine the server started. It does not close or sync the exports' devices. A backend call
// that never returns keeps Close waiting: a running call cannot be
// abandoned without leaving its goroutine behind. Later calls return nil
// at once.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	var err error
	for l := range s.listeners {
		if e := l.Close(); e != nil && err == nil && !errors.Is(e, net.ErrClosed) {
			err = e
		}
	}
	for c := range s.conns {
		c.shutdown()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	c := &s.c
	return Stats{
		Connections: c.conns.Load(), Active: c.active.Load(), Serving: c.serving.Load(), Refused: c.refused.Load(),
		Reads: c.reads.Load(), Writes: c.writes.Load(), FUAWrites: c.fua.Load(),
		Flushes: c.flushes.Load(), Trims: c.trims.Load(), WriteZeroes: c.zeroes.Load(),
		Errors: c.errs.Load(), BytesRead: c.bread.Load(), BytesWrite: c.bwrite.Load(),
		MaxInFlight: c.maxInFlight.Load(),
	}
}
