package mirror

import (
	"errors"
	"fmt"
	"io"
	"math/bits"
	"sync"
	"time"

	"github.com/dmlog/dmlog/dirtylog"
)

// WriteAt writes p at off on the legs, following dm-raid1's write path for
// every region the write touches:
//
//   - in sync (CLEAN or DIRTY): the region's pending count goes up and it
//     is marked in the log; the log flush covering the mark completes
//     before any leg sees the write (writers share flushes; a region
//     already durably marked skips the wait); then every leg is written in
//     parallel;
//   - out of sync (NOSYNC): only the default leg is written, no mark;
//   - being recovered: the write waits for the copy, then goes to all legs.
//
// A region another node is resyncing (RemoteRecovering) is waited for
// first. Overlapping writes in flight are applied to every leg in the
// order they started. A leg that fails the write is failed (status D) and
// the region goes out of sync; the write succeeds if a healthy leg holds
// it, and fails with ErrIO if none does. With HandleErrors (and not
// KeepLog) a write that failed on some leg is held until that leg is
// replaced or the mirror closes (see Options.HandleErrors).
func (m *Mirror) WriteAt(p []byte, off int64) (int, error) {
	if err := m.checkRange(off, int64(len(p))); err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if err := m.writeOrDiscard(p, off, int64(len(p)), false); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Discard discards n bytes at off: afterwards the range reads as zeroes
// on every leg. It takes the write path (its regions are counted and
// marked, and it is ordered with overlapping writes, so the legs stay
// identical), and each leg gets it as a Discard(off, n int64) error call
// if the leg has that method, or as a write of zeroes if not. A leg's
// Discard must leave zeroes in the range, as a punched hole or a device
// with deterministic zeroes after TRIM does. A failed Discard does not
// fail the leg (the kernel treats it as not supported): the range is
// written with zeroes instead, and only an error of that write fails the
// leg, as a write error. Errors are as WriteAt's.
//
// Unlike dm-raid1, which passes discards to the legs without region
// accounting, the mirror marks the regions first, so that a crash in the
// middle of a discard leaves them dirty and resynced.
func (m *Mirror) Discard(off, n int64) error {
	if err := m.checkRange(off, n); err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	return m.writeOrDiscard(nil, off, n, false)
}

// writeOrDiscard runs the write path for p at off, or for a discard of n
// bytes if p is nil. With fua every leg written is synced before the
// write completes.
func (m *Mirror) writeOrDiscard(p []byte, off, n int64, fua bool) error {
	rlo, rhi := m.regionOf(off), m.regionOf(off+n-1)
	if !m.enterSlot(m.slot(rlo)) {
		return ErrClosed
	}
	defer m.exitSlot(m.slot(rlo))
	if !m.local {
		if err := m.waitRemoteRecovering(rlo, rhi); err != nil {
			return err
		}
	}

	op := writeOps.Get().(*writeOp)
	routes, ents := op.routeBuf[:0], op.entBuf[:]
	if n := int(rhi-rlo) + 1; n > len(op.routeBuf) {
		routes, ents = make([]bool, 0, n), make([]*region, n)
	}
	op.fua = fua
	err := m.write(op, p, off, n, rlo, rhi, routes, ents[:rhi-rlo+1])
	op.release()
	return err
}

func (m *Mirror) write(op *writeOp, p []byte, off, n int64, rlo, rhi dirtylog.Region, routes []bool, ents []*region) error {

	// Fast path: only the shards of the regions touched are locked, and
	// the write goes ahead if it needs no wait (no flush, no earlier
	// overlapping write, no quiesced region, no held write).
	w := &op.w
	mask := shardMask(rlo, rhi)
	m.lockShards(mask)
	var c *config
	routes, need, anySync, counted := m.tryCountWriteLocked(w, off, n, rlo, rhi, mask, routes, ents)
	if counted && m.mayIssueNowLocked(w, need, anySync) {
		m.home(mask).flushSkips++
		c = m.cfg.Load()
		m.unlockShards(mask)
	} else {
		m.unlockShards(mask)
		m.mu.Lock()
		var err error
		routes, err = m.registerWriteLocked(w, off, n, rlo, rhi, mask, routes, ents, counted, need, anySync)
		if err != nil {
			m.home(mask).count(p == nil, n, false)
			m.mu.Unlock()
			return err
		}
		// Wait for every earlier overlapping write: one order on every leg.
		for m.overlapsEarlierLocked(w) {
			m.wait()
		}
		c = m.cfg.Load()
		m.mu.Unlock()
	}

	werr := m.issue(op, c, p, off, n, rlo, routes)

	m.lockShards(mask)
	m.completeWriteLocked(w)
	m.home(mask).count(p == nil, n, werr == nil)
	if werr == errHold {
		m.stats.heldWrites.Add(1)
		closed := m.closed.Load()
		ch := m.held
		m.unlockShards(mask)
		if closed {
			return fmt.Errorf("%w: write held after a leg failure, mirror closed", ErrIO)
		}
		<-ch
		if m.closed.Load() {
			return fmt.Errorf("%w: write held after a leg failure, mirror closed", ErrIO)
		}
		return nil
	}
	m.unlockShards(mask)
	return werr
}

var errHold = errors.New("mirror: hold")

// writeOp is the per-write scratch space, pooled so that a write to an
// already-marked region allocates little.
type writeOp struct {
	w        wop
	segBuf   [1]segment
	errBuf   [MaxLegs]error
	routeBuf [4]bool
	entBuf   [4]*region
	wg       sync.WaitGroup
	fua      bool // sync each leg after writing it (WriteAtFUA)
}

var writeOps = sync.Pool{New: func() any { return new(writeOp) }}

func (op *writeOp) release() {
	op.w = wop{}
	op.segBuf = [1]segment{}
	op.errBuf = [MaxLegs]error{}
	op.entBuf = [4]*region{}
	op.fua = false
	writeOps.Put(op)
}

// waitRemoteRecovering waits while another node resyncs any of the
// regions (shared storage), polling as the kernel does every 200 ms. Local
// logs (Core, Disk) are never asked: their answer is always false.
func (m *Mirror) waitRemoteRecovering(rlo, rhi dirtylog.Region) error {
	if m.local {
		return nil
	}
	var t *time.Timer
	for r := rlo; r <= rhi; r++ {
		for {
			rec, err := m.log.RemoteRecovering(m.ctx, r)
			if err == nil && !rec {
				break
			}
			// An error counts as "recovering", as in the kernel.
			if t == nil {
				t = time.NewTimer(200 * time.Millisecond)
				defer t.Stop()
			} else {
				t.Reset(200 * time.Millisecond)
			}
			select {
			case <-m.ctx.Done():
				return ErrClosed
			case <-t.C:
			}
		}
	}
	return nil
}

// tryCountWriteLocked is the fast path's half of registerWriteLocked,
// with only the shards in mask locked: if no region is quiesced and the
// log answers every state without blocking, it counts the write (see
// countWriteLocked) and reports counted; otherwise it changes nothing.
func (m *Mirror) tryCountWriteLocked(w *wop, off, n int64, rlo, rhi dirtylog.Region, mask uint64, routes []bool, ents []*region) (_ []bool, need uint64, anySync, counted bool) {
	for r := rlo; r <= rhi; r++ {
		e, ok := m.lookupFastLocked(r)
		ents[r-rlo] = e
		if !ok || e.quiesced {
			for r2 := rlo; r2 <= r; r2++ {
				if e := m.entry(r2); e != nil {
					m.dropIfIdleLocked(r2, e)
				}
			}
			return routes, 0, false, false
		}
	}
	routes, need, anySync = m.countWriteLocked(w, off, n, rlo, mask, routes, ents)
	return routes, need, anySync, true
}

// mayIssueNowLocked reports whether a counted write may go to the legs at
// once: its marks are durable, no earlier overlapping write is in flight
// and no error handling holds it. Only w's shards need be locked.
func (m *Mirror) mayIssueNowLocked(w *wop, need uint64, anySync bool) bool {
	if need > m.okGen {
		return false
	}
	if anySync && m.logFailure && m.opts.HandleErrors {
		return false
	}
	if !anySync && m.opts.HandleErrors && !m.opts.KeepLog && anyFailed(m.cfg.Load()) {
		return false
	}
	return !m.overlapsEarlierLocked(w)
}

// countWriteLocked counts the write on each region, marks the in-sync
// regions not yet marked, records the routing (true: all legs) and lists
// the write in flight. It returns the flush generation that makes the
// marks durable (0: none needed) and whether any region is in sync. ents
// holds the hashed entries of regions rlo onwards (a pending count keeps
// them hashed until completeWriteLocked); w's shards (or m.mu) must be
// held.
func (m *Mirror) countWriteLocked(w *wop, off, n int64, rlo dirtylog.Region, mask uint64, routes []bool, ents []*region) (_ []bool, need uint64, anySync bool) {
	routes = routes[:0]
	for i, e := range ents {
		r := rlo + dirtylog.Region(i)
		e.pending++
		routes = append(routes, e.inSync)
		if !e.inSync {
			continue // NOSYNC: default leg only, not marked
		}
		anySync = true
		if !e.dirty {
			m.log.MarkRegion(r)
			e.dirty = true
			if m.volatile {
				e.markGen = 0
			} else {
				e.markGen = m.flushStarted + 1
			}
		} else if e.pending == 1 {
			m.shardOf(r).idleDirty-- // it was waiting to be cleared
		}
		need = max(need, e.markGen)
	}
	h := m.home(mask)
	h.seq++
	*w = wop{lo: off, hi: off + n, seq: h.seq, mask: mask, rlo: rlo, ents: ents}
	m.listLocked(w)
	return routes, need, anySync
}

// listLocked appends w to the inflight list of each of its shards.
func (m *Mirror) listLocked(w *wop) {
	for x := w.mask; x != 0; x &= x - 1 {
		sh := &m.shards[bits.TrailingZeros64(x)]
		sh.inflight = append(sh.inflight, w)
	}
}

// addInflightLocked lists a non-write user of [lo, hi) (read repair) so
// that it is ordered with writes. m.mu must be held.
func (m *Mirror) addInflightLocked(w *wop, lo, hi int64) {
	mask := shardMask(m.regionOf(lo), m.regionOf(hi-1))
	h := m.home(mask)
	h.seq++
	*w = wop{lo: lo, hi: hi, seq: h.seq, mask: mask}
	m.listLocked(w)
}

// removeInflightLocked takes w off its shards' inflight lists.
func (m *Mirror) removeInflightLocked(w *wop) {
	for x := w.mask; x != 0; x &= x - 1 {
		sh := &m.shards[bits.TrailingZeros64(x)]
		for i, o := range sh.inflight {
			if o == w {
				copy(sh.inflight[i:], sh.inflight[i+1:])
				sh.inflight[len(sh.inflight)-1] = nil
				sh.inflight = sh.inflight[:len(sh.inflight)-1]
				break
			}
		}
	}
}

// registerWriteLocked is the write path's slow half, under m.mu: unless
// the fast path already counted the write (counted, with its need and
// anySync), it waits for quiesced regions and counts it; then it applies
// the error handling and waits for the log flush that makes the marks
// durable.
func (m *Mirror) registerWriteLocked(w *wop, off, n int64, rlo, rhi dirtylog.Region, mask uint64, routes []bool, ents []*region, counted bool, need uint64, anySync bool) ([]bool, error) {
retry:
	if !counted {
		// Regions held for recovery, verify or a join copy park new
		// writes.
		for r := rlo; r <= rhi; r++ {
			e := m.entry(r)
			if e != nil && e.quiesced {
				m.wait()
				goto retry
			}
		}
		// Learn every region's state before changing any (a remote log
		// may make us drop the lock).
		for r := rlo; r <= rhi; r++ {
			if _, err := m.lookupLocked(r); err == errRetry {
				goto retry
			}
		}
		for r := rlo; r <= rhi; r++ {
			ents[r-rlo] = m.entry(r)
		}
		routes, need, anySync = m.countWriteLocked(w, off, n, rlo, mask, routes, ents)
	}
	counted = false

	var err error
	switch {
	case anySync && m.logFailure && m.opts.HandleErrors:
		// The kernel does not issue writes after a log failure with
		// handle_errors.
		err = fmt.Errorf("%w: log failed earlier (handle_errors)", ErrLogFailed)
	case need > 0:
		err = m.waitFlushLocked(need)
	default:
		m.stats.flushSkips.Add(1)
	}
	if err == nil && !anySync {
		c := m.cfg.Load()
		if m.opts.HandleErrors && !m.opts.KeepLog && anyFailed(c) {
			// Kernel: nosync writes go to failures when a leg failed.
			err = errHold
		}
	}
	if err != nil {
		m.completeWriteLocked(w)
		if err == errHold {
			ch := m.held
			if !m.closed.Load() {
				m.mu.Unlock()
				<-ch
				m.mu.Lock()
			}
			if m.closed.Load() {
				return nil, fmt.Errorf("%w: write held after a leg failure, mirror closed", ErrIO)
			}
			goto retry
		}
		return nil, err
	}
	return routes, nil
}

func anyFailed(c *config) bool {
	for _, l := range c.legs {
		if l.failed() {
			return true
		}
	}
	return false
}

// overlapsEarlierLocked reports whether a write listed before w overlaps
// it. Two overlapping writes share a region, so a shard, and were listed
// there in the order they were counted (each counted with all its shards
// locked), which is the order they reach the legs.
func (m *Mirror) overlapsEarlierLocked(w *wop) bool {
	for x := w.mask; x != 0; x &= x - 1 {
		for _, o := range m.shards[bits.TrailingZeros64(x)].inflight {
			if o == w {
				break
			}
			if o.lo < w.hi && w.lo < o.hi {
				return true
			}
		}
	}
	return false
}

// completeWriteLocked drops the write's pending counts and its place in
// the in-flight lists. w's shards (or m.mu) must be held.
func (m *Mirror) completeWriteLocked(w *wop) {
	for i, e := range w.ents {
		r := w.rlo + dirtylog.Region(i)
		e.pending--
		if e.pending == 0 {
			if e.dirty {
				e.idle = m.clearEpoch
				m.shardOf(r).idleDirty++
				if m.opts.clearDelay() == 0 || !m.clearArmed.Load() {
					// Arm the clear timer, or clear now. The flusher
					// disarms under m.mu, after which this region's
					// count is either seen by it or this load sees
					// the timer disarmed.
					m.kick()
				}
			}
			m.dropIfIdleLocked(r, e)
		}
	}
	m.removeInflightLocked(w)
	m.wakeWaiters()
}

// segment is a run of regions with one routing.
type segment struct {
	off  int64
	n    int64
	p    []byte // nil for a discard
	all  bool
	rlo  dirtylog.Region
	rhi  dirtylog.Region
	errs []error // per leg
	fua  bool    // sync the leg after writing it
}

// issue writes p to the legs per region routing, in parallel, and handles
// leg failures. It returns nil, errHold, or an error wrapping ErrIO.
func (m *Mirror) issue(op *writeOp, c *config, p []byte, off, n int64, rlo dirtylog.Region, routes []bool) error {
	segs := op.segBuf[:0]
	end := off + n
	for i := 0; i < len(routes); {
		j := i
		for j+1 < len(routes) && routes[j+1] == routes[i] {
			j++
		}
		so := max(off, int64(rlo+dirtylog.Region(i))<<m.rshift)
		eo := min(end, int64(rlo+dirtylog.Region(j)+1)<<m.rshift)
		s := segment{off: so, n: eo - so, all: routes[i], rlo: rlo + dirtylog.Region(i), rhi: rlo + dirtylog.Region(j), fua: op.fua}
		if p != nil {
			s.p = p[so-off : eo-off]
		}
		segs = append(segs, s)
		i = j + 1
	}
	nlegs := len(c.legs)
	wg := &op.wg
	for si := range segs {
		s := &segs[si]
		if len(segs) == 1 && nlegs <= MaxLegs {
			s.errs = op.errBuf[:nlegs]
		} else {
			s.errs = make([]error, nlegs)
		}
		for i, l := range c.legs {
			if !s.all && i != c.def {
				continue
			}
			if si == len(segs)-1 && (i == nlegs-1 || (!s.all && i == c.def)) {
				// The last I/O runs on this goroutine.
				s.errs[i] = m.writeLeg(l, s)
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.errs[i] = m.writeLeg(l, s)
			}()
		}
	}
	wg.Wait()

	var failedErr error
	hold := false
	for si := range segs {
		s := &segs[si]
		written := 0
		var legErr error
		for i, l := range c.legs {
			if !s.all && i != c.def {
				continue
			}
			if err := s.errs[i]; err != nil {
				m.stats.writeErrors.Add(1)
				err = fmt.Errorf("mirror: writing %s at %d: %w", l.name, s.off, err)
				legErr = err
				m.failLeg(l, errWrite, err)
				continue
			}
			if !l.failed() || !s.all {
				written++
			}
		}
		if legErr == nil {
			continue
		}
		if s.all {
			// The kernel skips this after a log failure (it cannot record
			// it durably); the mirror still must not read or resync the
			// region as if its legs agreed, so it always goes out of sync.
			m.mu.Lock()
			for r := s.rlo; r <= s.rhi; r++ {
				m.setOutOfSyncLocked(r, m.entry(r))
			}
			m.mu.Unlock()
		}
		// Acknowledge only what the default leg holds: it is the source of
		// every out-of-sync region's reads and resync. (The kernel
		// completes a write that failed on the default leg if another leg
		// took it, then resyncs the old data over it.)
		nc := m.cfg.Load()
		onDefault := false
		for i, l := range c.legs {
			if l == nc.legs[nc.def] && s.errs[i] == nil && (s.all || i == c.def) {
				onDefault = true
			}
		}
		switch {
		case written == 0:
			failedErr = fmt.Errorf("%w: no leg holds the write at %d: %w", ErrIO, s.off, legErr)
		case !onDefault:
			failedErr = fmt.Errorf("%w: the write at %d failed on the default leg %s, and no healthy in-sync leg could take over: %w",
				ErrIO, s.off, nc.legs[nc.def].name, legErr)
		case m.opts.KeepLog && m.logFailure:
			failedErr = fmt.Errorf("%w: the write at %d failed on a leg after the log failed (keep_log): %w", ErrIO, s.off, legErr)
		case m.opts.HandleErrors && !m.opts.KeepLog:
			hold = true
		}
	}
	if failedErr != nil {
		return failedErr
	}
	if hold {
		return errHold
	}
	return nil
}

// writeLeg writes s to leg l, or discards it there: with the leg's
// Discard if it has one and it succeeds, else by writing zeroes. With
// s.fua the leg is then synced; a failed sync is the write's error, so the
// leg is failed as for a failed write.
func (m *Mirror) writeLeg(l *legState, s *segment) error {
	err := m.writeLegData(l, s)
	if err == nil && s.fua {
		if err = l.sync(); err != nil {
			err = fmt.Errorf("syncing after a FUA write: %w", err)
		}
	}
	return err
}

func (m *Mirror) writeLegData(l *legState, s *segment) error {
	if s.p != nil {
		_, err := l.dev.WriteAt(s.p, s.off)
		return err
	}
	if d, ok := l.dev.(discarder); ok {
		if d.Discard(s.off, s.n) == nil {
			return nil
		}
		// A failed discard is "not supported", not a leg failure.
		m.stats.discardFallbacks.Add(1)
	}
	return writeZeroes(l.dev, s.off, s.n)
}

// zeroes is the source of the zeroes written for a discard on legs that
// cannot discard; it is only ever read.
var zeroes [128 << 10]byte

func writeZeroes(w io.WriterAt, off, n int64) error {
	for n > 0 {
		k := min(n, int64(len(zeroes)))
		if _, err := w.WriteAt(zeroes[:k], off); err != nil {
			return err
		}
		off += k
		n -= k
	}
	return nil
}
