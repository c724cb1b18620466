package mirror

import (
	"context"
	"errors"
	"math/bits"
	"sync"

	"github.com/dmlog/dmlog/dirtylog"
)

// region is the mirror's in-memory view of one region that is in use: a
// region is hashed only while a write is in flight on it, it waits to be
// cleared, or recovery, verify or a join copy holds it. Everything else is
// asked of the log. Fields are guarded by the region's shard lock (held
// alone by the write path, or with every other shard as Mirror.mu).
type region struct {
	pending  int32  // writes in flight (counted, as the kernel's rh_inc)
	pin      int32  // holders that need the entry kept (mark-then-flush)
	inSync   bool   // the log's sync bit, kept current by our own changes
	dirty    bool   // marked by us and in sync; cleared once idle
	quiesced bool   // held by recovery, verify or a join copy: writes park
	markGen  uint64 // flush generation that makes our mark durable
	idle     uint64 // clear epoch at which pending last reached zero
}

// The region table is split into 64 shards (region r lives in shard
// r%nShards; a write's shards fit in one uint64 mask), each with its own lock, so that writes to different regions
// do not contend on one mutex. A write locks the shards of the regions it
// touches in ascending shard order; Mirror.mu locks every shard in the
// same order, so it excludes every write's critical section and is what
// the slow paths (flusher, resync, verify, leg changes, waits) hold. State
// written only under Mirror.mu may be read under any one shard lock.
const nShards = 64

// shard is one lock's share of the region table; every field but mu is
// guarded by mu.
type shard struct {
	mu        sync.Mutex
	regions   map[dirtylog.Region]*region
	free      []*region
	inflight  []*ticket // writes in flight touching this shard, in start order
	idleDirty int64     // dirty regions of the shard with no write in flight
	seq       uint64    // order tickets of the writes whose home this is

	// Counters of the writes and discards whose home this is (see Stats).
	writes, bytesWritten, flushSkips int64
	discards, bytesDiscarded         int64
	_                                [64]byte
}

// count counts a write (or a discard) of n bytes; ok if it succeeded.
func (sh *shard) count(discard bool, n int64, ok bool) {
	switch {
	case discard:
		sh.discards++
		if ok {
			sh.bytesDiscarded += n
		}
	default:
		sh.writes++
		if ok {
			sh.bytesWritten += n
		}
	}
}

// allShards is a sync.Locker that holds every shard lock.
type allShards struct{ s *[nShards]shard }

// Lock takes every shard lock in ascending order.
func (a allShards) Lock() {
	for i := range a.s {
		a.s[i].mu.Lock()
	}
}

// Unlock releases every shard lock.
func (a allShards) Unlock() {
	for i := range a.s {
		a.s[i].mu.Unlock()
	}
}

func (m *Mirror) shardOf(r dirtylog.Region) *shard { return &m.shards[r%nShards] }

// shardMask returns the set of shards holding regions rlo..rhi.
func shardMask(rlo, rhi dirtylog.Region) uint64 {
	if rhi-rlo >= nShards-1 {
		return 1<<nShards - 1
	}
	var mask uint64
	for r := rlo; r <= rhi; r++ {
		mask |= 1 << (r % nShards)
	}
	return mask
}

// lockShards locks the shards in mask in ascending order.
func (m *Mirror) lockShards(mask uint64) {
	for x := mask; x != 0; x &= x - 1 {
		m.shards[bits.TrailingZeros64(x)].mu.Lock()
	}
}

func (m *Mirror) unlockShards(mask uint64) {
	for x := mask; x != 0; x &= x - 1 {
		m.shards[bits.TrailingZeros64(x)].mu.Unlock()
	}
}

// wait waits on m.cond (m.mu held). Wakers that hold only shard locks
// broadcast only when someone waits (see wakeWaiters).
func (m *Mirror) wait() {
	m.waiters.Add(1)
	m.cond.Wait()
	m.waiters.Add(-1)
}

// wakeWaiters wakes the goroutines waiting on m.cond, if any. A waiter
// registers (under m.mu, so under every shard lock) before it releases
// the locks, so a change made under a shard lock and followed by
// wakeWaiters is never missed.
func (m *Mirror) wakeWaiters() {
	if m.waiters.Load() > 0 {
		m.cond.Broadcast()
	}
}

func (m *Mirror) entry(r dirtylog.Region) *region { return m.shardOf(r).regions[r] }

// home returns the shard a write's counters and order ticket live in: the
// lowest of its shards.
func (m *Mirror) home(mask uint64) *shard { return &m.shards[bits.TrailingZeros64(mask)] }

// idleDirtyLocked counts the dirty regions with no write in flight (m.mu
// held).
func (m *Mirror) idleDirtyLocked() int64 {
	var n int64
	for i := range m.shards {
		n += m.shards[i].idleDirty
	}
	return n
}

// errRetry tells a caller holding m.mu that it released the lock and must
// start over.
var errRetry = errors.New("mirror: retry")

// lookupLocked returns the entry of r, creating it from the log's state.
// If the log cannot answer without blocking (a remote log), it drops m.mu,
// asks with blocking allowed, retakes the lock and returns errRetry so the
// caller re-validates what it saw.
func (m *Mirror) lookupLocked(r dirtylog.Region) (*region, error) {
	sh := m.shardOf(r)
	if e := sh.regions[r]; e != nil {
		return e, nil
	}
	in, err := m.log.InSync(m.nb, r)
	if errors.Is(err, dirtylog.ErrWouldBlock) {
		epoch := m.syncEpoch
		m.mu.Unlock()
		in, err = m.log.InSync(context.Background(), r)
		m.mu.Lock()
		if err != nil {
			in = false // the kernel treats an error as "not in sync"
		}
		if sh.regions[r] == nil && m.syncEpoch == epoch {
			sh.regions[r] = sh.newRegion(in)
		}
		return nil, errRetry
	}
	if err != nil {
		in = false
	}
	e := sh.newRegion(in)
	sh.regions[r] = e
	return e, nil
}

// lookupFastLocked is lookupLocked for a caller that holds only r's
// shard lock: if the log cannot answer without blocking it reports false
// and changes nothing.
func (m *Mirror) lookupFastLocked(r dirtylog.Region) (*region, bool) {
	sh := m.shardOf(r)
	if e := sh.regions[r]; e != nil {
		return e, true
	}
	in, err := m.log.InSync(m.nb, r)
	if errors.Is(err, dirtylog.ErrWouldBlock) {
		return nil, false
	}
	e := sh.newRegion(err == nil && in)
	sh.regions[r] = e
	return e, true
}

func (sh *shard) newRegion(inSync bool) *region {
	var e *region
	if n := len(sh.free); n > 0 {
		e = sh.free[n-1]
		sh.free = sh.free[:n-1]
		*e = region{}
	} else {
		e = new(region)
	}
	e.inSync = inSync
	return e
}

// dropIfIdleLocked unhashes e when nothing needs it any more.
func (m *Mirror) dropIfIdleLocked(r dirtylog.Region, e *region) {
	if e.pending == 0 && e.pin == 0 && !e.quiesced && !e.dirty {
		sh := m.shardOf(r)
		delete(sh.regions, r)
		if len(sh.free) < 64 {
			sh.free = append(sh.free, e)
		}
	}
}

// setOutOfSyncLocked records that r's legs may differ. The region must
// already be durably marked in the log (by a write or by markDurable).
func (m *Mirror) setOutOfSyncLocked(r dirtylog.Region, e *region) {
	m.log.SetRegionSync(r, false)
	m.syncEpoch++
	if e != nil {
		if e.dirty && e.pending == 0 {
			m.shardOf(r).idleDirty--
		}
		e.dirty = false
		e.inSync = false
	}
	m.inSync = false
	m.kickResync()
}

// quiesce takes r out of service for recovery, verify or a join copy: it
// waits until no other holder has it, stops new writes from starting on it
// and waits for the writes in flight to drain. It returns the entry, still
// hashed, with m.mu held; release with unquiesceLocked.
func (m *Mirror) quiesceLocked(ctx context.Context, r dirtylog.Region) (*region, error) {
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		e, err := m.lookupLocked(r)
		if err == errRetry {
			continue
		}
		if e.quiesced {
			m.wait()
			continue
		}
		e.quiesced = true
		for e.pending > 0 {
			if err := ctx.Err(); err != nil {
				e.quiesced = false
				m.dropIfIdleLocked(r, e)
				m.cond.Broadcast()
				return nil, err
			}
			m.wait()
		}
		return e, nil
	}
}

func (m *Mirror) unquiesceLocked(r dirtylog.Region, e *region) {
	e.quiesced = false
	m.dropIfIdleLocked(r, e)
	m.cond.Broadcast()
}
