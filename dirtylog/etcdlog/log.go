package etcdlog

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/dmlog/dmlog/dirtylog"
)

// Log is one node's handle on a clustered dirty log kept in etcd. It
// implements dirtylog.Log.
//
// Log is safe for concurrent use by multiple goroutines. MarkRegion and
// ClearRegion are lock-free and allocation-free; IsClean, InSync and
// RemoteRecovering with dirtylog.NonBlocking answer from the watch-fed
// cache without blocking; Flush, ResyncWork, SetRegionSync, SyncCount,
// the queries with a context that may block, Suspend, Resume and Close
// talk to etcd. Close stops every goroutine the
// Log started; it does not close the etcd client, which the caller owns.
type Log struct {
	opts    Options
	cli     *clientv3.Client
	k       keys
	count   uint64
	chunk   uint64
	nchunks int
	c       *cache

	// This node's marks, in memory: 1 = marked. dirty has bit i set when
	// chunk i changed since the last flush took it.
	marked      []atomic.Uint64
	dirty       atomic.Uint64
	flushFailed atomic.Bool

	flushMu   sync.Mutex // serialises Flush, Resume and rejoining
	committed [][]uint64 // per chunk: the marks last committed (under flushMu)

	sessMu  sync.Mutex
	sess    *concurrency.Session
	joinRev atomic.Int64 // CreateRevision of our liveness key

	fenced     atomic.Bool
	reported   atomic.Bool // EventLogFailed sent
	suspended  atomic.Bool
	closed     atomic.Bool
	janitoring atomic.Bool // this node is the elected janitor
	rebuilds   atomic.Int64
	noRenew    atomic.Bool // tests: act as if etcd were unreachable for lease renewal

	bg     context.Context
	cancel context.CancelFunc
	stop   chan struct{}
	wg     sync.WaitGroup

	watchMu  sync.Mutex
	watchCtx context.Context
	pause    chan chan struct{} // tests: pause the watch until the channel is closed
	// tests: called when a barrier finds the cache behind the revision it
	// needs and is about to wait for the watch
	barrierWaits atomic.Pointer[func(rev int64)]

	linMu   sync.Mutex
	linNext *round
	linBusy bool

	resyncMu sync.Mutex // serialises ResyncWork and SetRegionSync

	prioMu     sync.Mutex
	prioQueued map[dirtylog.Region]bool
	prioCh     chan dirtylog.Region
}

var _ dirtylog.Log = (*Log)(nil)

// Open opens (creating it in etcd if it does not exist) the log
// o.Name as node o.Node, registers the node's lease-bound liveness key and
// starts the watch that feeds its cache. If the node left marks behind
// (it crashed), they become resync work in the same transaction that
// registers it. If another process still holds the node's liveness key
// (or the previous incarnation's lease has not expired yet), Open waits
// for it to go, until ctx is done (ErrNodeInUse).
//
// The client is used, not owned: close it after the Log.
func Open(ctx context.Context, cli *clientv3.Client, o Options) (*Log, error) {
	if cli == nil {
		return nil, fmt.Errorf("%w: nil etcd client", ErrBadOptions)
	}
	count, chunk, err := o.geometry()
	if err != nil {
		return nil, err
	}
	l := &Log{
		opts: o, cli: cli, k: keys{p: o.prefix()}, count: count, chunk: chunk,
		nchunks:    int((count + chunk - 1) / chunk),
		marked:     make([]atomic.Uint64, (count+63)/64),
		stop:       make(chan struct{}),
		pause:      make(chan chan struct{}),
		prioQueued: map[dirtylog.Region]bool{},
		prioCh:     make(chan dirtylog.Region, 256),
	}
	l.c = newCache(l.k, o.Node, count, chunk)
	l.committed = make([][]uint64, l.nchunks)
	for i := range l.committed {
		lo, hi := l.c.chunkWords(i)
		l.committed[i] = make([]uint64, hi-lo)
	}
	l.bg, l.cancel = context.WithCancel(context.Background())

	fail := func(err error) (*Log, error) {
		l.closed.Store(true)
		close(l.stop)
		l.sessMu.Lock()
		if l.sess != nil {
			_ = l.sess.Close()
		}
		l.sessMu.Unlock()
		l.cancel()
		l.wg.Wait()
		return nil, err
	}
	if err := l.ensureMeta(ctx); err != nil {
		return fail(err)
	}
	if err := l.reload(ctx); err != nil {
		return fail(err)
	}
	l.wg.Add(2)
	go l.watchLoop()
	go l.prioLoop()
	l.flushMu.Lock()
	err = l.join(ctx)
	l.flushMu.Unlock()
	if err != nil {
		return fail(err)
	}
	return l, nil
}

// ensureMeta creates the meta key and the sync chunks, or checks the
// stored meta against the options.
func (l *Log) ensureMeta(ctx context.Context) error {
	want := Meta{Format: FormatVersion, RegionSize: l.opts.RegionSize, RegionCount: l.count,
		ChunkRegions: l.chunk, Created: l.opts.Sync.String()}
	fill := tagZeros
	if l.opts.Sync == dirtylog.NoSync {
		fill = tagOnes
	}
	ops := []clientv3.Op{clientv3.OpPut(l.k.meta(), string(want.encode()))}
	for i := range l.nchunks {
		ops = append(ops, clientv3.OpPut(l.k.sync(i), string([]byte{byte(fill)})))
		if fill == tagZeros {
			ops = append(ops, clientv3.OpPut(l.k.pristine(i), string([]byte{tagOnes})))
		}
	}
	resp, err := l.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(l.k.meta()), "=", 0)).
		Then(ops...).
		Else(clientv3.OpGet(l.k.meta())).Commit()
	if err != nil {
		return fmt.Errorf("etcdlog: open %q: %w", l.opts.Name, err)
	}
	if resp.Succeeded {
		return nil
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) != 1 {
		return fmt.Errorf("etcdlog: open %q: %w: meta key vanished", l.opts.Name, ErrCorrupt)
	}
	got, err := ParseMeta(kvs[0].Value)
	if err != nil {
		return fmt.Errorf("etcdlog: open %q: %w", l.opts.Name, err)
	}
	if got.RegionSize != want.RegionSize || got.RegionCount != want.RegionCount {
		return fmt.Errorf("etcdlog: open %q: %w: etcd holds %d regions of %d bytes, options ask for %d regions of %d bytes",
			l.opts.Name, ErrLayoutMismatch, got.RegionCount, got.RegionSize, want.RegionCount, want.RegionSize)
	}
	return nil
}

// reload rebuilds the cache from a linearizable read of the prefix.
func (l *Log) reload(ctx context.Context) error {
	resp, err := l.cli.Get(ctx, l.k.p, clientv3.WithPrefix())
	if err != nil {
		return fmt.Errorf("etcdlog: reading %q: %w", l.opts.Name, err)
	}
	l.c.load(resp.Kvs, resp.Header.Revision)
	if err := l.c.corruption(); err != nil {
		return fmt.Errorf("etcdlog: reading %q: %w", l.opts.Name, err)
	}
	return nil
}

func (l *Log) session() *concurrency.Session {
	l.sessMu.Lock()
	defer l.sessMu.Unlock()
	return l.sess
}

// fence records that this node lost its lease.
func (l *Log) fence() {
	l.fenced.Store(true)
	if !l.reported.Swap(true) && l.opts.OnEvent != nil {
		l.opts.OnEvent(dirtylog.Event{Kind: dirtylog.EventLogFailed, Err: ErrFenced})
	}
}

func (l *Log) fencedErr(op string) error {
	return fmt.Errorf("etcdlog: %s on node %q of %q: %w (%w)", op, l.opts.Node, l.opts.Name, ErrFenced, dirtylog.ErrLogFailed)
}

// aliveCmp is the fencing compare: our liveness key is the one we created.
func (l *Log) aliveCmp() clientv3.Cmp {
	return clientv3.Compare(clientv3.CreateRevision(l.k.node(l.opts.Node)), "=", l.joinRev.Load())
}

// join registers this node: a new lease (session), and one transaction
// that turns any marks an earlier incarnation left into resync work,
// deletes them and creates the liveness key. Called with flushMu held.
func (l *Log) join(ctx context.Context) error {
	sess, err := concurrency.NewSession(l.cli, concurrency.WithTTL(l.opts.leaseSeconds()), concurrency.WithContext(l.bg))
	if err != nil {
		return fmt.Errorf("etcdlog: lease for node %q: %w", l.opts.Node, err)
	}
	self := l.opts.Node
	for {
		if _, alive := l.c.alive(self); alive {
			// An earlier incarnation's lease is still live: wait for it.
			select {
			case <-l.c.wait():
				continue
			case <-time.After(100 * time.Millisecond):
				if err := l.reload(ctx); err != nil {
					_ = sess.Close()
					if ctx.Err() != nil { // gave up waiting
						return fmt.Errorf("etcdlog: node %q of %q: %w: %w", self, l.opts.Name, ErrNodeInUse, err)
					}
					return err
				}
				continue
			case <-ctx.Done():
				_ = sess.Close()
				return fmt.Errorf("etcdlog: node %q of %q: %w: %w", self, l.opts.Name, ErrNodeInUse, ctx.Err())
			}
		}
		cmps, ops := l.reapTxn(self)
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(l.k.node(self)), "=", 0))
		ops = append(ops, clientv3.OpPut(l.k.node(self), "alive", clientv3.WithLease(sess.Lease())))
		resp, err := l.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
		if err != nil {
			_ = sess.Close()
			return fmt.Errorf("etcdlog: registering node %q: %w", self, err)
		}
		if err := l.barrier(ctx, resp.Header.Revision); err != nil {
			_ = sess.Close()
			return err
		}
		if !resp.Succeeded {
			continue // the cache has caught up: try again with what it knows
		}
		l.joinRev.Store(resp.Header.Revision)
		break
	}
	// Our marks in etcd are gone: commit the in-memory ones afresh.
	var d uint64
	for i := range l.committed {
		clear(l.committed[i])
		lo, hi := l.c.chunkWords(i)
		for j := lo; j < hi; j++ {
			if l.marked[j].Load() != 0 {
				d |= 1 << i
				break
			}
		}
	}
	l.dirty.Or(d)
	l.sessMu.Lock()
	l.sess = sess
	l.fenced.Store(false)
	l.sessMu.Unlock()
	l.wg.Add(2)
	go l.leaseLoop(sess)
	go l.janitorLoop(sess)
	return nil
}

// leaseLoop watches the session. When its keepalive stops (etcd was
// unreachable for a TTL, say while it restarted), it asks etcd whether the
// lease still exists: if so it resumes keeping it alive with a new session
// on the same lease; if not the node is fenced.
func (l *Log) leaseLoop(sess *concurrency.Session) {
	defer l.wg.Done()
	select {
	case <-sess.Done():
	case <-l.stop:
		return
	}
	for delay := 20 * time.Millisecond; ; delay = min(2*delay, 200*time.Millisecond) {
		if l.closed.Load() || l.session() != sess {
			return
		}
		if l.noRenew.Load() {
			select {
			case <-time.After(delay):
				continue
			case <-l.stop:
				return
			}
		}
		ctx, cancel := context.WithTimeout(l.bg, l.opts.requestTimeout())
		ttl, err := l.cli.TimeToLive(ctx, sess.Lease())
		cancel()
		if err == nil && ttl.TTL <= 0 {
			l.sessMu.Lock()
			if l.sess == sess { // not replaced by a Resume meanwhile
				l.fence()
			}
			l.sessMu.Unlock()
			return
		}
		if err == nil {
			ns, err := concurrency.NewSession(l.cli, concurrency.WithLease(sess.Lease()),
				concurrency.WithTTL(l.opts.leaseSeconds()), concurrency.WithContext(l.bg))
			if err == nil {
				l.sessMu.Lock()
				if l.sess != sess || l.closed.Load() {
					l.sessMu.Unlock()
					ns.Orphan()
					return
				}
				l.sess = ns
				l.sessMu.Unlock()
				l.wg.Add(2)
				go l.leaseLoop(ns)
				go l.janitorLoop(ns)
				return
			}
		}
		select {
		case <-time.After(delay):
		case <-l.stop:
			return
		}
	}
}

// barrier waits until the cache has applied every change up to rev,
// asking the watch for a progress notification if no event gets it there.
func (l *Log) barrier(ctx context.Context, rev int64) error {
	delay := 2 * time.Millisecond
	if h := l.barrierWaits.Load(); h != nil && l.c.rev.Load() < rev {
		(*h)(rev)
	}
	for l.c.rev.Load() < rev {
		ch := l.c.wait()
		if l.c.rev.Load() >= rev {
			return nil
		}
		t := time.NewTimer(delay)
		select {
		case <-ch:
			t.Stop()
		case <-t.C:
			l.requestProgress()
			delay = min(2*delay, 100*time.Millisecond)
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("etcdlog: waiting for revision %d: %w", rev, ctx.Err())
		case <-l.stop:
			t.Stop()
			return fmt.Errorf("etcdlog: %w", dirtylog.ErrClosed)
		}
	}
	return nil
}

// RegionSize returns the region size in bytes.
func (l *Log) RegionSize() int64 { return l.opts.RegionSize }

// RegionCount returns the number of regions.
func (l *Log) RegionCount() uint64 { return l.count }

// Revision returns the etcd revision the local cache is at: IsClean,
// InSync and SyncCount answer as of this revision (plus this node's own
// unflushed marks).
func (l *Log) Revision() int64 { return l.c.rev.Load() }

func (l *Log) check(r dirtylog.Region) error {
	if uint64(r) >= l.count {
		return fmt.Errorf("etcdlog: region %d of %d: %w", r, l.count, dirtylog.ErrRegionRange)
	}
	return nil
}

// query checks r and, when ctx may block, brings the cache up to date
// with everything etcd committed before the call (see Log).
func (l *Log) query(ctx context.Context, r dirtylog.Region) error {
	if err := l.check(r); err != nil {
		return err
	}
	if dirtylog.MayBlock(ctx) && !l.closed.Load() {
		return l.linearize(ctx)
	}
	return nil
}

// IsClean reports whether r is clean: no node has it marked (this node's
// unflushed marks included), and it is in sync or has not been touched
// since the log was created out of sync (cmirrord's rule: an out-of-sync
// region a node wrote is not clean until it is resynced). With a context
// that may block it first catches up with etcd (one round trip, shared by
// concurrent callers); with dirtylog.NonBlocking it answers from the cache
// at Revision.
func (l *Log) IsClean(ctx context.Context, r dirtylog.Region) (bool, error) {
	if err := l.query(ctx, r); err != nil {
		return false, err
	}
	return l.marked[r/64].Load()&(1<<(r%64)) == 0 && l.c.cleanForOthers(r), nil
}

// InSync reports whether r is in sync. With a context that may block it
// first catches up with etcd (one round trip, shared by concurrent
// callers); with dirtylog.NonBlocking it answers from the cache at
// Revision and never returns ErrWouldBlock.
func (l *Log) InSync(ctx context.Context, r dirtylog.Region) (bool, error) {
	if err := l.query(ctx, r); err != nil {
		return false, err
	}
	return l.c.inSync(r), nil
}

// MarkRegion records, in memory, that a write to r is about to start.
// Marks are per node: a region marked here and on another node stays
// dirty until both clear it. It never blocks and never allocates.
func (l *Log) MarkRegion(r dirtylog.Region) {
	if uint64(r) >= l.count {
		return
	}
	w, m := &l.marked[r/64], uint64(1)<<(r%64)
	if w.Load()&m != 0 {
		return
	}
	w.Or(m)
	l.dirtyChunk(r)
}

// ClearRegion records, in memory, that this node's write to r is done.
func (l *Log) ClearRegion(r dirtylog.Region) {
	if uint64(r) >= l.count || l.flushFailed.Load() {
		return
	}
	w, m := &l.marked[r/64], uint64(1)<<(r%64)
	if w.Load()&m == 0 {
		return
	}
	w.And(^m)
	l.dirtyChunk(r)
}

func (l *Log) dirtyChunk(r dirtylog.Region) {
	b := uint64(1) << (uint64(r) / l.chunk)
	if l.dirty.Load()&b == 0 {
		l.dirty.Or(b)
	}
}

// Flush commits every mark and clear this node made since the last flush
// in one etcd transaction, guarded by a compare on the node's liveness
// key. A node whose lease expired gets an error wrapping ErrFenced and
// must stop writing; nothing is committed. A flush with nothing new to
// commit still checks the liveness key (a read-only transaction bounded
// by Options.RequestTimeout), so a caller that flushes learns of the fence
// even when its writes all go to regions it had marked. (A mirror does not
// flush for such writes; what stops them is RemoteRecovering, which the
// mirror asks before every write on a shared log: it fails while etcd is
// unreachable and reports the regions a janitor took from an expired node
// as out of sync.)
func (l *Log) Flush(ctx context.Context) error {
	if l.closed.Load() {
		return fmt.Errorf("etcdlog: flush: %w", dirtylog.ErrClosed)
	}
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	return l.flushLocked(ctx)
}

func (l *Log) flushLocked(ctx context.Context) error {
	if l.fenced.Load() {
		return l.fencedErr("flush")
	}
	d := l.dirty.Swap(0)
	if d == 0 {
		return l.checkLive(ctx)
	}
	type change struct {
		chunk int
		words []uint64
	}
	var (
		changes []change
		ops     []clientv3.Op
		cmps    []clientv3.Cmp
		clears  bool
	)
	// The marks are read once: a retry (a contended pristine chunk)
	// rebuilds the transaction from the same words, so it never commits a
	// clear made after the FlushCallback ran, whose data it did not sync.
	snap := make([][]uint64, l.nchunks)
	build := func() {
		changes, ops, cmps, clears = changes[:0], ops[:0], []clientv3.Cmp{l.aliveCmp()}, false
		for m := d; m != 0; m &= m - 1 {
			i := bits.TrailingZeros64(m)
			lo, hi := l.c.chunkWords(i)
			now := snap[i]
			if now == nil {
				now = make([]uint64, hi-lo)
				for j := range now {
					now[j] = l.marked[lo+j].Load()
				}
				snap[i] = now
			}
			same, empty := true, true
			var newly []uint64
			for j := range now {
				if now[j] != l.committed[i][j] {
					same = false
					if l.committed[i][j]&^now[j] != 0 {
						clears = true
					}
					if n := now[j] &^ l.committed[i][j]; n&l.c.pristine[lo+j].Load() != 0 {
						if newly == nil {
							newly = make([]uint64, hi-lo)
						}
						newly[j] = n
					}
				}
				if now[j] != 0 {
					empty = false
				}
			}
			if same {
				continue
			}
			changes = append(changes, change{i, now})
			if empty {
				ops = append(ops, clientv3.OpDelete(l.k.mark(l.opts.Node, i)))
			} else {
				ops = append(ops, clientv3.OpPut(l.k.mark(l.opts.Node, i), string(encodeChunk(now, l.c.chunkBits(i)))))
			}
			if newly != nil {
				// A write touches a pristine region: it is no longer
				// clean-while-out-of-sync, for every node.
				p, mod := l.c.pristineChunk(i)
				for j := range p {
					p[j] &^= newly[j]
				}
				cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(l.k.pristine(i)), "=", mod))
				ops = append(ops, clientv3.OpPut(l.k.pristine(i), string(encodeChunk(p, l.c.chunkBits(i)))))
			}
		}
	}
	build()
	if len(ops) == 0 {
		return l.checkLive(ctx)
	}
	if clears && l.opts.FlushCallback != nil && !l.flushFailed.Load() {
		if err := l.opts.FlushCallback(); err != nil {
			// As the disk log: every region is dirty from now on.
			l.flushFailed.Store(true)
			for i := range l.marked {
				l.marked[i].Store(^uint64(0))
			}
			if t := l.count % 64; t != 0 {
				l.marked[len(l.marked)-1].Store(1<<t - 1)
			}
			d = 1<<l.nchunks - 1
			if l.opts.OnEvent != nil {
				l.opts.OnEvent(dirtylog.Event{Kind: dirtylog.EventFlushCallbackFailed, Err: err})
			}
			clear(snap) // every region marked now
			build()
		}
	}
	for attempt := 0; ; attempt++ {
		resp, err := l.cli.Txn(ctx).If(cmps...).Then(ops...).Else(clientv3.OpGet(l.k.node(l.opts.Node))).Commit()
		if err != nil {
			l.dirty.Or(d)
			return fmt.Errorf("etcdlog: flush on node %q: %w: %w", l.opts.Node, dirtylog.ErrLogFailed, err)
		}
		if resp.Succeeded {
			break
		}
		if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) == 0 || kvs[0].CreateRevision != l.joinRev.Load() {
			l.dirty.Or(d)
			l.fence()
			return l.fencedErr("flush")
		}
		if attempt >= 16 {
			l.dirty.Or(d)
			return fmt.Errorf("etcdlog: flush on node %q: %w: pristine chunk contended", l.opts.Node, dirtylog.ErrLogFailed)
		}
		// Another node changed a pristine chunk: catch up and rebuild.
		if err := l.barrier(ctx, resp.Header.Revision); err != nil {
			l.dirty.Or(d)
			return err
		}
		build()
	}
	for _, ch := range changes {
		copy(l.committed[ch.chunk], ch.words)
	}
	return nil
}

// checkLive is the flush of nothing new: one read-only transaction on the
// liveness compare, bounded by Options.RequestTimeout, so a node whose
// lease expired without its noticing (paused, partitioned) fails this
// flush too. etcd answers it without a disk write.
func (l *Log) checkLive(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, l.opts.requestTimeout())
	defer cancel()
	resp, err := l.cli.Txn(ctx).If(l.aliveCmp()).Commit()
	if err != nil {
		return fmt.Errorf("etcdlog: flush on node %q: %w: %w", l.opts.Node, dirtylog.ErrLogFailed, err)
	}
	if !resp.Succeeded {
		l.fence()
		return l.fencedErr("flush")
	}
	return nil
}

// SyncCount returns the number of regions in sync. Like a blocking InSync
// it first catches up with everything etcd had committed when it was
// called (one round trip shared by concurrent callers, bounded by
// Options.RequestTimeout), so a SetRegionSync acknowledged on any node is
// counted; if etcd cannot be reached, or the log is closed, it answers
// from the cache (Revision).
func (l *Log) SyncCount() uint64 {
	if !l.closed.Load() {
		ctx, cancel := context.WithTimeout(l.bg, l.opts.requestTimeout())
		_ = l.linearize(ctx) // on failure: the cache's count
		cancel()
	}
	return l.c.syncCount.Load()
}

// Suspend flushes this node's marks and stops handing out resync work
// until Resume.
func (l *Log) Suspend(ctx context.Context) error {
	if err := l.Flush(ctx); err != nil {
		return err
	}
	l.suspended.Store(true)
	return nil
}

// Resume reloads the cache from a linearizable read and restarts the
// resync cursor. A fenced node rejoins: it takes a new lease, turns
// whatever marks it had left in etcd into resync work, and commits its
// current marks again.
func (l *Log) Resume(ctx context.Context) error {
	if l.closed.Load() {
		return fmt.Errorf("etcdlog: resume: %w", dirtylog.ErrClosed)
	}
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	if l.fenced.Load() {
		if old := l.session(); old != nil {
			old.Orphan()
		}
		if err := l.join(ctx); err != nil {
			return err
		}
	}
	if err := l.reload(ctx); err != nil {
		return err
	}
	l.c.resetCursor()
	l.suspended.Store(false)
	return l.flushLocked(ctx)
}

// Status returns the INFO status: "3 etcd <name> A", or D once this node
// has been fenced or the log's state could not be decoded.
func (l *Log) Status() string {
	s := "A"
	if l.fenced.Load() || l.c.corruption() != nil || l.flushFailed.Load() {
		s = "D"
	}
	return fmt.Sprintf("3 etcd %s %s", l.opts.Name, s)
}

// Table returns the TABLE string: "etcd 2 <name> <region sectors> ", with
// the sync word and argc 3 when a mode was given.
func (l *Log) Table() string {
	rs := l.opts.RegionSize / dirtylog.SectorSize
	if l.opts.Sync == dirtylog.DefaultSync {
		return fmt.Sprintf("etcd 2 %s %d ", l.opts.Name, rs)
	}
	return fmt.Sprintf("etcd 3 %s %d %s ", l.opts.Name, rs, l.opts.Sync)
}

// Close commits this node's outstanding clears (best effort, bounded by
// Options.RequestTimeout), revokes its lease (so its liveness key, claims
// and priority requests vanish at once) and stops every goroutine. Marks
// still set when Close is called stay in etcd and become resync work.
// A second Close returns an error wrapping dirtylog.ErrClosed (and so
// os.ErrClosed).
func (l *Log) Close() error {
	if l.closed.Swap(true) {
		return fmt.Errorf("etcdlog: close of log %q node %q: %w", l.opts.Name, l.opts.Node, dirtylog.ErrClosed)
	}
	var err error
	if !l.fenced.Load() {
		ctx, cancel := context.WithTimeout(context.Background(), l.opts.requestTimeout())
		l.flushMu.Lock()
		err = l.flushLocked(ctx)
		l.flushMu.Unlock()
		cancel()
	}
	close(l.stop)
	if s := l.session(); s != nil {
		if l.fenced.Load() {
			s.Orphan()
		} else if cerr := s.Close(); cerr != nil && err == nil && !errors.Is(cerr, context.Canceled) {
			err = fmt.Errorf("etcdlog: revoking lease of node %q: %w", l.opts.Node, cerr)
		}
	}
	l.cancel()
	l.wg.Wait()
	return err
}

// abandon stops the node as if its process died: no flush, no lease
// revoke (the lease expires on its own). For tests.
func (l *Log) abandon() {
	if l.closed.Swap(true) {
		return
	}
	close(l.stop)
	if s := l.session(); s != nil {
		s.Orphan()
	}
	l.cancel()
	l.wg.Wait()
}
