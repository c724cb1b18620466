package remote

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math/bits"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dmlog/dmlog/dirtylog"
)

// Defaults for ClientOptions.
const (
	DefaultTimeout         = 15 * time.Second
	DefaultRetryTimeout    = time.Second
	DefaultRedialMin       = 10 * time.Millisecond
	DefaultRedialMax       = 2 * time.Second
	DefaultClearFlushDelay = 3 * time.Second
)

// ClientOptions configures a Client.
type ClientOptions struct {
	// UUID names the log on the server (at most MaxUUIDLen bytes). Every
	// node of one clustered log uses the same UUID.
	UUID string
	// Node identifies this node among the log's users (the wire's luid).
	// It must be unique per log and stable across reconnects: the
	// server keeps a node's marks by it. Zero picks a random one.
	Node NodeID
	// DeviceSize is the size in bytes of the device the log describes
	// (required; the CTR sends it in 512-byte sectors, as the kernel does).
	DeviceSize int64
	// Args are the implementation words of the table line after the UUID,
	// e.g. {"clustered-disk", "253:2", "1024"} or {"clustered-core",
	// "1024", "nosync"}.
	Args []string
	// TLS configures the client side of mutual TLS 1.3; it is required
	// for TCP and must carry a client certificate.
	TLS *tls.Config
	// IntegratedFlush sends marks inside FLUSH requests (protocol v3)
	// instead of separate MARK_REGION requests; a flush that only clears
	// sends the CLEAR_REGION requests and schedules an empty FLUSH after
	// ClearFlushDelay, which a flush with marks cancels.
	IntegratedFlush bool
	// Timeout bounds the calls that take no context (SetRegionSync,
	// SyncCount, Status, Close). It is also how long a connection may
	// stay silent while requests wait for replies before it is taken for
	// lost and redialled, so that a hung server or a silently cut network
	// fails a Flush (ErrUnreachable) instead of blocking it. Zero means
	// DefaultTimeout.
	Timeout time.Duration
	// RetryTimeout is how long a call waits for a lost server to be
	// redialled before failing with ErrUnreachable. Zero means
	// DefaultRetryTimeout.
	RetryTimeout time.Duration
	// RedialMin and RedialMax bound the exponential backoff between
	// redials. Zero means DefaultRedialMin / DefaultRedialMax.
	RedialMin, RedialMax time.Duration
	// ClearFlushDelay: see IntegratedFlush. Zero means
	// DefaultClearFlushDelay.
	ClearFlushDelay time.Duration
	// Dial, if set, replaces net.Dialer (TLS is still applied on top for
	// TCP).
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
}

// Client is a dirtylog.Log whose state lives on a Server: the kernel's
// "userspace" log type. Marks and clears are batched in memory and sent
// by Flush (clears first); queries go to the server, so every node sees
// one coherent log.
//
// A lost server is redialled in the background with exponential backoff;
// the client then replays CTR and RESUME (as the kernel does) and its
// outstanding marks, and retries the interrupted request. While the server
// is unreachable Flush fails with ErrUnreachable (wrapping why the last
// redial failed, e.g. ErrVersion for a server speaking another protocol
// version), and queries made with a dirtylog.NonBlocking context return
// dirtylog.ErrWouldBlock (they always do: the answer lives on the server).
//
// Client is safe for concurrent use. MarkRegion and ClearRegion are
// lock-free and do not allocate; Flush calls are serialised.
type Client struct {
	opts    ClientOptions
	network string
	address string
	ctr     []byte
	table   string

	regionSize int64
	count      uint64

	marks  pendingSet      // marks not yet sent
	clears pendingSet      // clears not yet sent
	held   []atomic.Uint64 // marked and not cleared: replayed after a redial

	seq atomic.Uint32

	flushMu    sync.Mutex
	flushBuf   []byte
	regs       []dirtylog.Region
	flushReps  []reply
	clearTimer *time.Timer // integrated flush: the delayed empty FLUSH

	mu          sync.Mutex
	cc          *clientConn   // nil while disconnected
	ready       chan struct{} // closed when cc is set again
	redialing   bool
	redialErr   error // why the last redial attempt failed
	resumed     bool
	closed      bool
	pendingSync map[dirtylog.Region]bool
	abandon     bool // test hook: simulate a crash, never redial

	done chan struct{}
	wg   sync.WaitGroup
}

// Dial connects to the log server at address ("unix" path or "tcp"
// host:port; TCP needs opts.TLS), constructs the log (CTR), learns its
// region size and resumes it, as the kernel does at table load and
// activation.
func Dial(ctx context.Context, network, address string, opts ClientOptions) (*Client, error) {
	if err := checkUUID(opts.UUID); err != nil {
		return nil, err
	}
	if opts.UUID == "" {
		return nil, fmt.Errorf("%w: empty log UUID", dirtylog.ErrBadArgs)
	}
	if len(opts.Args) < 2 {
		return nil, fmt.Errorf("%w: want a log type and its arguments, got %q", dirtylog.ErrBadArgs, opts.Args)
	}
	if opts.DeviceSize < dirtylog.SectorSize {
		return nil, fmt.Errorf("%w: ClientOptions.DeviceSize is %d bytes: want the size in bytes of the device the log describes, at least %d bytes",
			dirtylog.ErrBadArgs, opts.DeviceSize, dirtylog.SectorSize)
	}
	if opts.Node == 0 {
		var b [8]byte
		_, _ = rand.Read(b[:])
		opts.Node = binary.LittleEndian.Uint64(b[:]) | 1
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.RetryTimeout <= 0 {
		opts.RetryTimeout = DefaultRetryTimeout
	}
	if opts.RedialMin <= 0 {
		opts.RedialMin = DefaultRedialMin
	}
	if opts.RedialMax <= 0 {
		opts.RedialMax = DefaultRedialMax
	}
	if opts.ClearFlushDelay <= 0 {
		opts.ClearFlushDelay = DefaultClearFlushDelay
	}
	switch network {
	case "unix":
	case "tcp", "tcp4", "tcp6":
		if opts.TLS == nil || (len(opts.TLS.Certificates) == 0 && opts.TLS.GetClientCertificate == nil) {
			return nil, fmt.Errorf("%w: ClientOptions.TLS with a client certificate is required for %s", ErrInsecure, network)
		}
		t := opts.TLS.Clone()
		t.MinVersion = tls.VersionTLS13
		if t.ServerName == "" {
			if h, _, err := net.SplitHostPort(address); err == nil {
				t.ServerName = h
			}
		}
		opts.TLS = t
	default:
		return nil, fmt.Errorf("%w: network %q (want unix or tcp)", dirtylog.ErrBadArgs, network)
	}
	ctrStr := strconv.FormatInt(opts.DeviceSize/dirtylog.SectorSize, 10) + " " + strings.Join(opts.Args, " ")
	if len(ctrStr)+1 > MaxPayload {
		return nil, fmt.Errorf("%w: CTR string of %d bytes", ErrFrameTooLarge, len(ctrStr))
	}
	c := &Client{
		opts: opts, network: network, address: address,
		ctr:         append([]byte(ctrStr), 0),
		pendingSync: map[dirtylog.Region]bool{},
		done:        make(chan struct{}),
		ready:       make(chan struct{}),
	}
	var tb strings.Builder
	argc := 1 + len(opts.Args)
	if opts.IntegratedFlush {
		argc++
	}
	fmt.Fprintf(&tb, "userspace %d %s ", argc, opts.UUID)
	if opts.IntegratedFlush {
		tb.WriteString("integrated_flush ")
	}
	tb.WriteString(strings.Join(opts.Args, " "))
	tb.WriteByte(' ')
	c.table = tb.String()

	nc, err := c.dial(ctx)
	if err != nil {
		return nil, err
	}
	cc := newClientConn(c, nc)
	fail := func(err error) (*Client, error) {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		close(c.done)
		cc.fail(err)
		c.wg.Wait()
		return nil, err
	}
	reps, err := cc.roundTrips(ctx, opts.UUID, opts.Node, []request{{t: RequestCtr, p: c.ctr}, {t: RequestGetRegionSize}}, nil)
	if err == nil {
		err = firstErr(reps)
	}
	if err != nil {
		return fail(fmt.Errorf("remote: constructing log %s on %s: %w", opts.UUID, address, err))
	}
	if len(reps[1].p) != 8 {
		return fail(fmt.Errorf("%w: GET_REGION_SIZE reply of %d bytes", ErrBadFrame, len(reps[1].p)))
	}
	rs := binary.LittleEndian.Uint64(reps[1].p)
	if rs < 2 || rs&(rs-1) != 0 || rs > 1<<32 {
		return fail(fmt.Errorf("%w: server reports region size %d sectors", dirtylog.ErrBadRegionSize, rs))
	}
	c.regionSize = int64(rs) * dirtylog.SectorSize
	c.count = uint64((opts.DeviceSize + c.regionSize - 1) / c.regionSize)
	n := (c.count + 63) / 64
	c.marks = newPendingSet(c.count)
	c.clears = newPendingSet(c.count)
	c.held = make([]atomic.Uint64, n)
	if reps, err = cc.roundTrips(ctx, opts.UUID, opts.Node, []request{{t: RequestResume}}, nil); err == nil {
		err = firstErr(reps)
	}
	if err != nil {
		return fail(fmt.Errorf("remote: resuming log %s: %w", opts.UUID, err))
	}
	c.mu.Lock()
	c.cc, c.resumed = cc, true
	close(c.ready)
	c.mu.Unlock()
	return c, nil
}

func firstErr(reps []reply) error {
	for _, r := range reps {
		if r.err != nil {
			return r.err
		}
	}
	return nil
}

func (c *Client) dial(ctx context.Context) (net.Conn, error) {
	var nc net.Conn
	var err error
	if c.opts.Dial != nil {
		nc, err = c.opts.Dial(ctx, c.network, c.address)
	} else {
		var d net.Dialer
		nc, err = d.DialContext(ctx, c.network, c.address)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	if c.opts.TLS != nil && c.network != "unix" {
		tc := tls.Client(nc, c.opts.TLS)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, fmt.Errorf("%w: TLS handshake with %s: %w", ErrUnreachable, c.address, err)
		}
		nc = tc
	}
	return nc, nil
}

// Node returns the node id the client speaks for.
func (c *Client) Node() NodeID { return c.opts.Node }

// connLost is called once per failed connection.
func (c *Client) connLost(cc *clientConn, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cc != cc {
		return
	}
	c.cc = nil
	c.ready = make(chan struct{})
	if c.closed || c.abandon || c.redialing {
		return
	}
	c.redialing = true
	c.wg.Add(1)
	go c.redial()
}

// redial reconnects with exponential backoff, replays CTR, RESUME and the
// outstanding marks, then installs the connection.
func (c *Client) redial() {
	defer c.wg.Done()
	backoff := c.opts.RedialMin
	for {
		select {
		case <-c.done:
			c.mu.Lock()
			c.redialing = false
			c.mu.Unlock()
			return
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), c.opts.Timeout)
		go func() {
			select {
			case <-c.done:
				cancel()
			case <-ctx.Done():
			}
		}()
		nc, err := c.dial(ctx)
		if err == nil {
			cc := newClientConn(c, nc)
			if err = c.replay(ctx, cc); err == nil {
				cancel()
				c.mu.Lock()
				c.redialErr = nil
				if c.closed || c.abandon {
					c.redialing = false
					c.mu.Unlock()
					cc.fail(ErrUnreachable)
					return
				}
				if !cc.failed() {
					c.cc = cc
					c.redialing = false
					close(c.ready)
					c.mu.Unlock()
					return
				}
				// Lost again before it was installed: its connLost found
				// nothing to do, so go round again after the backoff.
				c.mu.Unlock()
			} else {
				cc.fail(fmt.Errorf("%w: %w", errConnLost, err))
			}
		}
		if err != nil {
			c.mu.Lock()
			c.redialErr = err
			c.mu.Unlock()
		}
		cancel()
		select {
		case <-c.done:
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, c.opts.RedialMax)
	}
}

// replay re-establishes the log on a fresh connection: CTR, RESUME (if
// the log was resumed), the marks still held, a FLUSH, and set-syncs that
// could not be sent.
func (c *Client) replay(ctx context.Context, cc *clientConn) error {
	reqs := []request{{t: RequestCtr, p: c.ctr}}
	c.mu.Lock()
	if c.resumed {
		reqs = append(reqs, request{t: RequestResume})
	}
	sent := maps.Clone(c.pendingSync)
	for r, in := range sent {
		reqs = append(reqs, request{t: RequestSetRegionSync, p: setSyncPayload(r, in)})
	}
	c.mu.Unlock()
	var held []byte
	for w := range c.held {
		for v := c.held[w].Load(); v != 0; v &= v - 1 {
			held = binary.LittleEndian.AppendUint64(held, uint64(w)*64+uint64(bits.TrailingZeros64(v)))
		}
	}
	for len(held) > 0 {
		n := min(len(held), MaxRegionsPerRequest*8)
		reqs = append(reqs, request{t: RequestMarkRegion, p: held[:n]})
		held = held[n:]
	}
	reqs = append(reqs, request{t: RequestFlush})
	reps, err := cc.roundTrips(ctx, c.opts.UUID, c.opts.Node, reqs, nil)
	if err == nil {
		err = firstErr(reps)
	}
	if err != nil {
		return err
	}
	c.mu.Lock()
	for r, in := range sent {
		if v, ok := c.pendingSync[r]; ok && v == in {
			delete(c.pendingSync, r)
		}
	}
	c.mu.Unlock()
	return nil
}

func setSyncPayload(r dirtylog.Region, in bool) []byte {
	p := binary.LittleEndian.AppendUint64(make([]byte, 0, 16), uint64(r))
	if in {
		return binary.LittleEndian.AppendUint64(p, 1)
	}
	return binary.LittleEndian.AppendUint64(p, 0)
}

// conn returns the live connection, waiting for a redial until ctx or
// the retry deadline expires.
func (c *Client) conn(ctx context.Context, until time.Time) (*clientConn, error) {
	for {
		c.mu.Lock()
		cc, ready, closed, rerr := c.cc, c.ready, c.closed, c.redialErr
		c.mu.Unlock()
		if closed {
			return nil, dirtylog.ErrClosed
		}
		if cc != nil && !cc.failed() {
			return cc, nil
		}
		if cc != nil {
			// Failed, and its connLost may not have run yet: run it (it
			// is idempotent), which drops cc and starts the redial.
			c.connLost(cc, errConnLost)
			continue
		}
		wait := time.Until(until)
		if wait <= 0 {
			return nil, c.unreachable(rerr)
		}
		t := time.NewTimer(wait)
		select {
		case <-ready:
			t.Stop()
		case <-t.C:
			c.mu.Lock()
			rerr = c.redialErr
			c.mu.Unlock()
			return nil, c.unreachable(rerr)
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-c.done:
			t.Stop()
			return nil, dirtylog.ErrClosed
		}
	}
}

// unreachable is the error of a call given up while redialling: it wraps
// ErrUnreachable and why the last attempt failed (a refused connection, a
// TLS failure, a server speaking another version: ErrVersion), if any.
func (c *Client) unreachable(last error) error {
	if last == nil {
		return fmt.Errorf("%w: %s (redialling in the background)", ErrUnreachable, c.address)
	}
	return fmt.Errorf("%w: %s (redialling in the background; last attempt: %w)", ErrUnreachable, c.address, last)
}

// do sends reqs in order and returns their replies, redialling and
// retrying (every request of the protocol is idempotent for one node)
// when the connection is lost. A reply with an error makes do fail.
func (c *Client) do(ctx context.Context, reqs []request, out []reply) ([]reply, error) {
	until := time.Now().Add(c.opts.RetryTimeout)
	noLogRetried := false
	for {
		cc, err := c.conn(ctx, until)
		if err != nil {
			return nil, err
		}
		reps, err := cc.roundTrips(ctx, c.opts.UUID, c.opts.Node, reqs, out)
		if err != nil {
			if errors.Is(err, errConnLost) && ctx.Err() == nil && time.Now().Before(until) {
				continue
			}
			if errors.Is(err, errConnLost) && ctx.Err() == nil {
				return nil, fmt.Errorf("%w: %w", ErrUnreachable, err)
			}
			return nil, err
		}
		err = firstErr(reps)
		if err != nil && errors.Is(err, ErrNoLog) && !noLogRetried {
			// The server forgot this node on this connection: replay.
			noLogRetried = true
			if rerr := c.replay(ctx, cc); rerr != nil {
				return nil, rerr
			}
			continue
		}
		return reps, err
	}
}

func (c *Client) call(ctx context.Context, t RequestType, p []byte) ([]byte, error) {
	var out [1]reply
	reps, err := c.do(ctx, []request{{t: t, p: p}}, out[:0])
	if err != nil {
		return nil, err
	}
	return reps[0].p, nil
}

func (c *Client) timeoutCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), c.opts.Timeout)
}

// RegionSize returns the region size in bytes, as the server reported it.
func (c *Client) RegionSize() int64 { return c.regionSize }

// RegionCount returns ceil(DeviceSize/RegionSize).
func (c *Client) RegionCount() uint64 { return c.count }

func (c *Client) check(r dirtylog.Region) error {
	if uint64(r) >= c.count {
		return fmt.Errorf("%w: region %d of %d", dirtylog.ErrRegionRange, r, c.count)
	}
	return nil
}

func regionPayload(b *[8]byte, r dirtylog.Region) []byte {
	binary.LittleEndian.PutUint64(b[:], uint64(r))
	return b[:]
}

func (c *Client) query(ctx context.Context, t RequestType, r dirtylog.Region, want int) ([]byte, error) {
	if err := c.check(r); err != nil {
		return nil, err
	}
	if !dirtylog.MayBlock(ctx) {
		return nil, dirtylog.ErrWouldBlock
	}
	var b [8]byte
	p, err := c.call(ctx, t, regionPayload(&b, r))
	if err != nil {
		return nil, err
	}
	if len(p) != want {
		return nil, fmt.Errorf("%w: %v reply of %d bytes, want %d", ErrBadFrame, t, len(p), want)
	}
	return p, nil
}

// IsClean asks the server whether r is clean (no node has a write in
// flight in it and it is in sync). With a NonBlocking context it returns
// dirtylog.ErrWouldBlock.
func (c *Client) IsClean(ctx context.Context, r dirtylog.Region) (bool, error) {
	p, err := c.query(ctx, RequestIsClean, r, 8)
	if err != nil {
		return false, err
	}
	return binary.LittleEndian.Uint64(p) != 0, nil
}

// InSync asks the server whether r is in sync. With a NonBlocking context
// it always returns dirtylog.ErrWouldBlock, as the kernel's userspace log
// does: another node may have put the region out of sync at any time, so
// no local answer is safe.
func (c *Client) InSync(ctx context.Context, r dirtylog.Region) (bool, error) {
	p, err := c.query(ctx, RequestInSync, r, 8)
	if err != nil {
		return false, err
	}
	return binary.LittleEndian.Uint64(p) != 0, nil
}

// MarkRegion records a mark to send with the next Flush. It does not
// block or allocate. A clear of r not yet sent is dropped (the last of a
// region's mark and clear wins).
func (c *Client) MarkRegion(r dirtylog.Region) {
	if uint64(r) >= c.count {
		return
	}
	c.clears.remove(r)
	c.marks.add(r)
	w, m := r/64, uint64(1)<<(r%64)
	if c.held[w].Load()&m == 0 {
		c.held[w].Or(m)
	}
}

// ClearRegion records a clear to send with the next Flush. It does not
// block or allocate. A mark of r not yet sent is dropped.
func (c *Client) ClearRegion(r dirtylog.Region) {
	if uint64(r) >= c.count {
		return
	}
	c.marks.remove(r)
	w, m := r/64, uint64(1)<<(r%64)
	if c.held[w].Load()&m != 0 {
		c.held[w].And(^m)
	}
	c.clears.add(r)
}

// Flush sends the pending clears, then the pending marks, and makes them
// durable on the server: CLEAR_REGION requests, then MARK_REGION requests
// and a FLUSH (or, with IntegratedFlush, FLUSH requests carrying the
// marks), pipelined on one connection. With nothing pending it sends
// nothing. If it fails, the entries stay pending for the next Flush.
func (c *Client) Flush(ctx context.Context) error {
	c.flushMu.Lock()
	defer c.flushMu.Unlock()
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return dirtylog.ErrClosed
	}
	return c.flushLocked(ctx, false)
}

func (c *Client) flushLocked(ctx context.Context, force bool) error {
	regs := c.clears.take(c.regs[:0])
	nClears := len(regs)
	regs = c.marks.take(regs)
	c.regs = regs
	clears, marks := regs[:nClears], regs[nClears:]
	if len(regs) == 0 && !force {
		return nil
	}
	buf := c.flushBuf[:0]
	for _, r := range regs {
		buf = binary.LittleEndian.AppendUint64(buf, uint64(r))
	}
	c.flushBuf = buf
	var reqs [8]request
	rq := reqs[:0]
	group := func(t RequestType, b []byte) {
		for len(b) > 0 {
			n := min(len(b), MaxRegionsPerRequest*8)
			rq = append(rq, request{t: t, p: b[:n]})
			b = b[n:]
		}
	}
	group(RequestClearRegion, buf[:8*nClears])
	mb := buf[8*nClears:]
	delayed := false
	switch {
	case !c.opts.IntegratedFlush:
		group(RequestMarkRegion, mb)
		rq = append(rq, request{t: RequestFlush})
	case len(marks) > 0:
		group(RequestFlush, mb)
		c.stopClearTimer()
	case force:
		c.stopClearTimer()
		rq = append(rq, request{t: RequestFlush})
	default:
		delayed = true
	}
	reps, err := c.do(ctx, rq, c.flushReps[:0])
	c.flushReps = reps[:0]
	if err != nil {
		// Keep the entries for the next Flush, unless the region has a
		// newer opposite entry.
		for _, r := range clears {
			if !c.marks.has(r) {
				c.clears.add(r)
			}
		}
		for _, r := range marks {
			if !c.clears.has(r) {
				c.marks.add(r)
			}
		}
		return fmt.Errorf("remote: flushing log %s: %w", c.opts.UUID, err)
	}
	if delayed && c.clearTimer == nil {
		c.clearTimer = time.AfterFunc(c.opts.ClearFlushDelay, c.delayedFlush)
	}
	return nil
}

func (c *Client) stopClearTimer() {
	if c.clearTimer != nil {
		c.clearTimer.Stop()
		c.clearTimer = nil
	}
}

// delayedFlush is the integrated-flush mode's scheduled empty FLUSH that
// makes clears durable.
func (c *Client) delayedFlush() {
	c.flushMu.Lock()
	defer c.flushMu.Unlock()
	if c.clearTimer == nil {
		return
	}
	c.clearTimer = nil
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return
	}
	ctx, cancel := c.timeoutCtx()
	defer cancel()
	_ = c.flushLocked(ctx, true)
}

// ResyncWork asks the server for a region to recover. As in cmirrord,
// one region of the log is recovered at a time, cluster-wide: until
// SetRegionSync ends its recovery, the node that claimed it gets the same
// region each time it asks, and every other node gets none. So a reply
// lost with a connection, or a call abandoned when its context ended,
// leaves nothing stuck: the next call returns the claimed region.
func (c *Client) ResyncWork(ctx context.Context) (dirtylog.Region, bool, error) {
	p, err := c.call(ctx, RequestGetResyncWork, nil)
	if err != nil {
		return 0, false, err
	}
	if len(p) != 16 {
		return 0, false, fmt.Errorf("%w: GET_RESYNC_WORK reply of %d bytes", ErrBadFrame, len(p))
	}
	if binary.LittleEndian.Uint64(p) == 0 {
		return 0, false, nil
	}
	r := dirtylog.Region(binary.LittleEndian.Uint64(p[8:]))
	if uint64(r) >= c.count {
		return 0, false, fmt.Errorf("%w: GET_RESYNC_WORK returned region %d of %d", ErrBadFrame, r, c.count)
	}
	return r, true, nil
}

// SetRegionSync tells the server r's sync state and ends its recovery.
// It waits up to ClientOptions.Timeout; if the server cannot be reached
// the update is kept and sent after the next redial.
func (c *Client) SetRegionSync(r dirtylog.Region, inSync bool) {
	if uint64(r) >= c.count {
		return
	}
	ctx, cancel := c.timeoutCtx()
	defer cancel()
	_, err := c.call(ctx, RequestSetRegionSync, setSyncPayload(r, inSync))
	var re *RemoteError
	c.mu.Lock()
	if err != nil && !errors.As(err, &re) {
		c.pendingSync[r] = inSync // sent after the redial
	} else {
		delete(c.pendingSync, r) // an older pending value is stale now
	}
	c.mu.Unlock()
}

// SyncCount asks the server how many regions are in sync; 0 if it cannot
// be reached (as the kernel).
func (c *Client) SyncCount() uint64 {
	ctx, cancel := c.timeoutCtx()
	defer cancel()
	p, err := c.call(ctx, RequestGetSyncCount, nil)
	if err != nil || len(p) != 8 {
		return 0
	}
	return binary.LittleEndian.Uint64(p)
}

// RemoteRecovering reports whether a write to r must wait: r is out of
// sync, so some node will resync it (and asking moves r to the front of
// the resync queue). With a NonBlocking context it returns
// dirtylog.ErrWouldBlock.
func (c *Client) RemoteRecovering(ctx context.Context, r dirtylog.Region) (bool, error) {
	p, err := c.query(ctx, RequestIsRemoteRecovering, r, 16)
	if err != nil {
		return false, err
	}
	return binary.LittleEndian.Uint64(p) != 0, nil
}

// Suspend flushes what is pending (including a scheduled clear-only
// flush) and sends PRESUSPEND and POSTSUSPEND. A suspended node that
// disconnects is not declared dead.
func (c *Client) Suspend(ctx context.Context) error {
	c.flushMu.Lock()
	force := c.clearTimer != nil
	err := c.flushLocked(ctx, force)
	c.flushMu.Unlock()
	if err != nil {
		return err
	}
	if _, err := c.do(ctx, []request{{t: RequestPresuspend}, {t: RequestPostsuspend}}, nil); err != nil {
		return fmt.Errorf("remote: suspending log %s: %w", c.opts.UUID, err)
	}
	c.mu.Lock()
	c.resumed = false
	c.mu.Unlock()
	return nil
}

// Resume sends RESUME: the server restarts the resync cursor.
func (c *Client) Resume(ctx context.Context) error {
	if _, err := c.call(ctx, RequestResume, nil); err != nil {
		return fmt.Errorf("remote: resuming log %s: %w", c.opts.UUID, err)
	}
	c.mu.Lock()
	c.resumed = true
	c.mu.Unlock()
	return nil
}

// Status returns the server's INFO string ("1 clustered-core",
// "3 clustered-disk <dev> A"), or "userspace 1 COM_FAILURE" if it cannot
// be had, as the kernel prints.
func (c *Client) Status() string {
	ctx, cancel := c.timeoutCtx()
	defer cancel()
	p, err := c.call(ctx, RequestStatusInfo, nil)
	if err != nil {
		return "userspace 1 COM_FAILURE"
	}
	return string(p)
}

// Table returns the kernel's TABLE string for the userspace log:
// "userspace <argc> <uuid> [integrated_flush ]<args> ".
func (c *Client) Table() string { return c.table }

// Close flushes what is pending, sends DTR (the node leaves the log; the
// last node's DTR destroys it on the server), closes the connection and
// stops the redial goroutine. Later calls, a second Close among them, fail
// with dirtylog.ErrClosed (which wraps os.ErrClosed).
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return dirtylog.ErrClosed
	}
	c.mu.Unlock()
	ctx, cancel := c.timeoutCtx()
	defer cancel()
	c.flushMu.Lock()
	force := c.clearTimer != nil
	c.stopClearTimer()
	err := c.flushLocked(ctx, force)
	c.flushMu.Unlock()
	if err == nil {
		_, err = c.do(ctx, []request{{t: RequestDtr}}, nil)
	}
	c.shutdown()
	if err != nil {
		return fmt.Errorf("remote: closing log %s: %w", c.opts.UUID, err)
	}
	return nil
}

// shutdown stops everything the client started.
func (c *Client) shutdown() {
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		close(c.done)
	}
	cc := c.cc
	c.mu.Unlock()
	c.flushMu.Lock()
	c.stopClearTimer()
	c.flushMu.Unlock()
	if cc != nil {
		cc.fail(dirtylog.ErrClosed)
	}
	c.wg.Wait()
}

// crash simulates the node dying: the connection is dropped without
// suspend or DTR and never redialled. Test hook.
func (c *Client) crash() {
	c.mu.Lock()
	c.abandon = true
	c.mu.Unlock()
	c.shutdown()
}

// dropConnection breaks the current connection as a network fault would;
// the client redials. Test hook.
func (c *Client) dropConnection() {
	c.mu.Lock()
	cc := c.cc
	c.mu.Unlock()
	if cc != nil {
		cc.nc.Close()
	}
}

var _ dirtylog.Log = (*Client)(nil)
