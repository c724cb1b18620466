package mirror

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"os"
	"sync"
	"sync/atomic"

	"github.com/dmlog/dmlog/dirtylog"
)

// MaxLegs is the kernel's limit on the number of legs (MAX_NR_MIRRORS).
const MaxLegs = 9

// Mirror is a RAID1 device over two or more legs, with a dirtylog.Log that
// records which regions may differ between them. It implements
// io.ReaderAt and io.WriterAt.
//
// A *Mirror is safe for concurrent use by any number of goroutines.
// Overlapping concurrent writes are applied to every leg in the same
// order, so in-sync legs stay byte-identical.
type Mirror struct {
	// Set by New (closers by Parse and OpenDisk before they return); read
	// without a lock afterwards.
	log      dirtylog.Log
	opts     Options
	size     int64 // bytes
	rsize    int64 // region size in bytes
	rshift   uint  // log2(rsize)
	nregions uint64
	nb       context.Context // dirtylog.NonBlocking(background), built once
	volatile bool            // dirtylog.IsVolatile(log): its Flush makes nothing durable
	local    bool            // dirtylog.IsLocal(log): RemoteRecovering is always false
	closers  []func() error  // devices Parse opened
	locked   []*os.File      // leg files flocked; guarded by mu (set by New, changed by AddLeg and ReplaceLeg), unlocked by Close

	// cfg is the leg set: atomic, so the write and read paths load it
	// without a lock; replaced (never changed in place) under mu.
	cfg atomic.Pointer[config]

	// ops is read-held by every ReadAt, WriteAt, Sync, Verify and leg
	// change; Close takes it exclusively to wait for them. closed is
	// atomic: set once by Close, read by every operation before it
	// enters.
	ops    [nShards]opSlot
	closed atomic.Bool

	// The region table, in shards (regions.go), each guarded by its own
	// lock. mu holds every shard lock: the slow paths take it; the write
	// path takes only the shards it touches. cond (on mu) is signalled
	// under mu or by wakeWaiters.
	shards  [nShards]shard
	mu      allShards
	cond    *sync.Cond
	waiters atomic.Int32  // goroutines in m.wait: atomic, read by wakers holding one shard
	rr      atomic.Uint64 // round-robin read cursor: atomic, bumped by every read

	// Group commit (flush.go), guarded by mu (so readable under any one
	// shard lock): a flush takes generation flushStarted+1; marks made
	// before it started are durable when flushDone reaches it and okGen
	// (the last successful flush) does too.
	flushStarted, flushDone, okGen, flushWant uint64
	stopFlusher                               bool   // guarded by mu
	clearEpoch                                uint64 // guarded by mu: bumped by each clear pass, done or put off
	flushKick                                 chan struct{}
	clearArmed                                atomic.Bool // the flusher's clear timer is armed: atomic, read by completing writes holding one shard

	// Mirror state, guarded by mu (readable under any one shard lock).
	syncEpoch    uint64        // bumped by every SetRegionSync we make
	inSync       bool          // the kernel's ms->in_sync
	logFailure   bool          // sticky, as the kernel's ms->log_failure
	logEventSent bool          // EventLogFailed was reported
	held         chan struct{} // closed (and replaced) to release held writes
	joinCursor   uint64        // next region to copy to joining legs

	// Background work: set by New; wg counts the goroutines Close waits
	// for; resync has its own locks (resync.go).
	ctx        context.Context
	cancel     context.CancelFunc
	wg         sync.WaitGroup
	resyncKick chan struct{}
	resync     resyncState

	stats counters // atomics: bumped on every path without a lock
}

// opSlot is one of the reader counts operations hold (see Mirror.ops).
type opSlot struct {
	sync.RWMutex
	_ [64]byte
}

// config is the leg set; it is replaced (under Mirror.mu), never changed
// in place, so its fields need no guard.
type config struct {
	legs []*legState
	def  int // the default leg
}

type counters struct {
	reads, bytesRead                     atomic.Int64
	flushes, flushWaits, flushSkips      atomic.Int64 // flushSkips: slow path (see shard)
	clearDefers                          atomic.Int64 // clear passes the flusher put off
	readErrors, writeErrors, readRepairs atomic.Int64
	resyncedRegions, resyncedBytes       atomic.Int64
	resyncFailures                       atomic.Int64
	heldWrites, discardFallbacks         atomic.Int64
}

// New builds a mirror over legs with log. Leg 0 is the default leg. The
// log's geometry gives the region size; Options.Size the device size (or
// the log's RegionCount*RegionSize).
//
// Every leg whose size can be learned (a Size() int64 method, a regular
// file's length, a block device's size) must hold Size bytes, or New
// fails with ErrBadLeg naming the leg, its size and the size needed; with
// Size 0 the size never exceeds the shortest such leg. With a local log
// (Core, Disk), legs handed as *os.File (or at an offset by Parse) are
// locked exclusively (flock) until Close, as the kernel claims a
// target's devices: a second mirror over the same files fails with an
// error wrapping flock.ErrInUse ("in use by another opener"). A cluster
// log's legs are shared between nodes on purpose and are not locked.
//
// With a persistent log (dirtylog.Disk), pass a flush callback that syncs
// the legs, or clears may reach the log before the data reaches the legs:
// use a LegsSyncer (Options.Syncer), or OpenDisk / Parse, which wire it.
// The mirror owns the log from now on: Close closes it. The caller keeps
// ownership of the legs.
//
// New starts the background resync of every region the log reports out of
// sync (unless Options.NoResync).
func New(legs []Leg, log dirtylog.Log, o Options) (*Mirror, error) {
	if log == nil {
		return nil, fmt.Errorf("%w: nil log", ErrBadTable)
	}
	if len(legs) < 1 || len(legs) > MaxLegs {
		return nil, fmt.Errorf("%w: %d legs (1 to %d)", ErrBadTable, len(legs), MaxLegs)
	}
	if o.KeepLog && !o.HandleErrors {
		return nil, fmt.Errorf("%w: keep_log requires handle_errors", ErrBadTable)
	}
	rs := log.RegionSize()
	if rs <= 0 || rs&(rs-1) != 0 {
		return nil, fmt.Errorf("%w: log region size %d", ErrBadTable, rs)
	}
	n := log.RegionCount()
	if o.Size < 0 || o.Size > 0 && uint64((o.Size+rs-1)/rs) != n {
		return nil, fmt.Errorf("%w: device size %d bytes does not match the log's %d regions of %d bytes", ErrBadTable, o.Size, n, rs)
	}
	for i, l := range legs {
		if l == nil {
			return nil, fmt.Errorf("%w: leg %d is nil", ErrBadLeg, i)
		}
	}
	size, err := checkLegSizes(legs, &o, int64(n)*rs, rs)
	if err != nil {
		return nil, err
	}
	if size <= 0 {
		return nil, fmt.Errorf("%w: device size %d bytes (the log has %d regions)", ErrBadTable, size, n)
	}
	var locked []*os.File
	if dirtylog.IsLocal(log) {
		// A cluster log (remote, etcdlog) shares its legs between nodes
		// on purpose; a local one must be their only user.
		if locked, err = lockLegs(legs, &o); err != nil {
			return nil, err
		}
	}
	m := &Mirror{
		log:        log,
		opts:       o,
		size:       size,
		rsize:      rs,
		rshift:     uint(bits.TrailingZeros64(uint64(rs))),
		nregions:   n,
		nb:         dirtylog.NonBlocking(context.Background()),
		flushKick:  make(chan struct{}, 1),
		resyncKick: make(chan struct{}, 1),
		held:       make(chan struct{}),
		locked:     locked,
	}
	m.volatile = dirtylog.IsVolatile(log)
	m.local = dirtylog.IsLocal(log)
	for i := range m.shards {
		m.shards[i].regions = make(map[dirtylog.Region]*region)
	}
	m.mu = allShards{&m.shards}
	m.cond = sync.NewCond(m.mu)
	c := &config{}
	for i, l := range legs {
		c.legs = append(c.legs, m.newLeg(l, i))
	}
	m.cfg.Store(c)
	m.inSync = log.SyncCount() == n
	if o.Syncer != nil {
		if err := o.Syncer.bind(m); err != nil {
			unlockAll(locked)
			return nil, err
		}
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	m.wg.Add(1)
	go m.flusher()
	if !o.NoResync {
		m.wg.Add(1)
		go m.resyncLoop()
	}
	return m, nil
}

func (m *Mirror) newLeg(l Leg, i int) *legState {
	ls := &legState{dev: l, name: fmt.Sprintf("leg%d", i)}
	if i < len(m.opts.Names) && m.opts.Names[i] != "" {
		ls.name = m.opts.Names[i]
	}
	if i < len(m.opts.Offsets) {
		ls.off = m.opts.Offsets[i]
	}
	return ls
}

// Size returns the size of the mirrored device in bytes.
func (m *Mirror) Size() int64 { return m.size }

// RegionSize returns the region size in bytes.
func (m *Mirror) RegionSize() int64 { return m.rsize }

// Log returns the mirror's dirty log.
func (m *Mirror) Log() dirtylog.Log { return m.log }

func (m *Mirror) regionOf(off int64) dirtylog.Region { return dirtylog.Region(off >> m.rshift) }

// regionLen returns the length of region r (the last may be partial).
func (m *Mirror) regionLen(r dirtylog.Region) int64 {
	start := int64(r) << m.rshift
	return min(m.rsize, m.size-start)
}

func (m *Mirror) checkRange(off, n int64) error {
	if off < 0 || n < 0 || off > m.size || n > m.size-off {
		return fmt.Errorf("%w: offset %d length %d size %d", ErrRange, off, n, m.size)
	}
	return nil
}

// enter registers an operation; it fails once Close has begun.
func (m *Mirror) enter() bool { return m.enterSlot(0) }

func (m *Mirror) exit() { m.exitSlot(0) }

// enterSlot is enter on slot i (ReadAt and WriteAt use their first
// region's, so that concurrent operations on different regions do not
// share one reader count).
func (m *Mirror) enterSlot(i int) bool {
	if m.closed.Load() {
		return false
	}
	m.ops[i].RLock()
	if m.closed.Load() {
		m.ops[i].RUnlock()
		return false
	}
	return true
}

func (m *Mirror) exitSlot(i int) { m.ops[i].RUnlock() }

func (m *Mirror) slot(r dirtylog.Region) int { return int(r % nShards) }

func (m *Mirror) event(e Event) {
	if m.opts.OnEvent != nil {
		m.opts.OnEvent(e)
	}
}

// failLeg records an error of kind typ on leg l, as the kernel's
// fail_mirror: the leg's status character changes; the first error of each
// kind raises an event, and a failed default leg hands over to a healthy
// one if the mirror is in sync or KeepLog is set (the kernel does both
// only with handle_errors).
func (m *Mirror) failLeg(l *legState, typ uint32, err error) {
	l.errCount.Add(1)
	old := l.errTypes.Or(typ)
	if old&typ != 0 {
		return
	}
	idx := -1
	m.mu.Lock()
	c := m.cfg.Load()
	for i, x := range c.legs {
		if x == l {
			idx = i
		}
	}
	newDef := -1
	if idx >= 0 && idx == c.def && (m.inSync || m.opts.KeepLog) {
		for i, x := range c.legs {
			if !x.failed() && !x.joining.Load() {
				nc := &config{legs: c.legs, def: i}
				m.cfg.Store(nc)
				newDef = i
				break
			}
		}
	}
	m.mu.Unlock()
	m.event(Event{Kind: EventLegFailed, Leg: idx, Err: err})
	if newDef >= 0 {
		m.event(Event{Kind: EventDefaultChanged, Leg: newDef})
	}
}

// syncLegs syncs every leg in parallel (the kernel's mirror_flush). A leg
// whose sync fails is failed (flush error, status F). With all true it
// fails if any leg failed (the log's flush callback: data must be on every
// leg before a region is clean); otherwise it fails only if the default
// leg failed to sync.
func (m *Mirror) syncLegs(all bool) error {
	c := m.cfg.Load()
	errs := make([]error, len(c.legs))
	var wg sync.WaitGroup
	for i, l := range c.legs {
		if _, ok := l.dev.(syncer); !ok {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.sync(); err != nil {
				errs[i] = fmt.Errorf("mirror: syncing %s: %w", l.name, err)
				m.failLeg(l, errFlush, errs[i])
			}
		}()
	}
	wg.Wait()
	if all {
		return errors.Join(errs...)
	}
	if err := errs[c.def]; err != nil {
		return fmt.Errorf("%w: %w", ErrIO, err)
	}
	return nil
}

// Sync makes every write acknowledged before it was called durable on
// every leg that holds it: it syncs the legs in parallel. A leg whose sync
// fails is failed (status F); Sync fails only if the default leg failed to
// sync (it may hold the only copy of out-of-sync regions).
func (m *Mirror) Sync() error {
	if !m.enter() {
		return ErrClosed
	}
	defer m.exit()
	return m.syncLegs(false)
}

// Close stops the resync worker and every goroutine the mirror started,
// waits for reads and writes in flight, releases held writes (they fail),
// clears idle regions, flushes and closes the log, and syncs the legs.
// Later calls return ErrClosed.
func (m *Mirror) Close() error {
	if m.closed.Swap(true) {
		return ErrClosed
	}
	m.cancel()
	m.mu.Lock()
	m.releaseHeldLocked()
	m.cond.Broadcast()
	m.mu.Unlock()
	for i := range m.ops {
		m.ops[i].Lock() // waits for every operation in flight
	}
	for i := range m.ops {
		m.ops[i].Unlock()
	}

	m.mu.Lock()
	m.stopFlusher = true
	m.cond.Broadcast()
	m.mu.Unlock()
	m.kick()
	m.wg.Wait()

	m.mu.Lock()
	m.applyClearsLocked(true)
	m.mu.Unlock()
	err := m.log.Flush(context.Background())
	if err != nil {
		err = fmt.Errorf("mirror: final log flush: %w", err)
	}
	err = errors.Join(err, m.syncLegs(true))
	if cerr := m.log.Close(); cerr != nil && !errors.Is(cerr, dirtylog.ErrClosed) {
		err = errors.Join(err, fmt.Errorf("mirror: closing log: %w", cerr))
	}
	m.mu.Lock()
	unlockAll(m.locked)
	m.locked = nil
	m.mu.Unlock()
	for _, c := range m.closers {
		err = errors.Join(err, c())
	}
	return err
}

func (m *Mirror) releaseHeldLocked() {
	close(m.held)
	m.held = make(chan struct{})
}
