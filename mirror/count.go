package mirror

import (
	"fmt"

	"github.com/dmlog/dmlog/dirtylog"
)

// Counting a write, and waiting until it may reach the legs: the kernel's
// do_write up to the point where the bios are dispatched. The line where
// a write's marks become durable is the return of waitFlushLocked in
// waitMarksLocked; no leg write starts before admit or countFast returns.

// countFast is the fast path, with only the write's shards locked: if no
// region is quiesced and the log answers every region's state without
// blocking, it counts the write (countLocked). It reports whether the
// write may go to the legs at once (readyLocked); a counted write that may
// not is left to admit, with op.counted set.
func (op *writeOp) countFast() bool {
	m := op.m
	m.lockShards(op.mask)
	if !op.lookupFastLocked() {
		m.unlockShards(op.mask)
		return false
	}
	op.countLocked()
	if !op.marksReadyLocked() {
		op.counted = true
		m.unlockShards(op.mask)
		return false
	}
	// Wait for earlier overlapping writes: one order on every leg.
	for o := m.earlierOverlapLocked(&op.t); o != nil; o = m.earlierOverlapLocked(&op.t) {
		m.waitDropLocked(&op.t, o)
	}
	m.home(op.mask).flushSkips++
	op.cfg = m.cfg.Load()
	m.unlockShards(op.mask)
	return true
}

// lookupFastLocked fills op.ents from the shards, creating entries from
// the log's non-blocking answers. If a region is quiesced or the log would
// block, it drops the entries it created and reports false.
func (op *writeOp) lookupFastLocked() bool {
	m := op.m
	for r := op.rlo; r <= op.rhi; r++ {
		e, ok := m.lookupFastLocked(r)
		op.ents[r-op.rlo] = e
		if !ok || e.quiesced {
			for r2 := op.rlo; r2 <= r; r2++ {
				if e := m.entry(r2); e != nil {
					m.dropIfIdleLocked(r2, e)
				}
			}
			return false
		}
	}
	return true
}

// marksReadyLocked reports whether a counted write needs nothing of the
// slow path: its marks are durable and no error handling holds it. Only
// the write's shards need be held (what it reads of Mirror is written
// under m.mu, which holds them too).
func (op *writeOp) marksReadyLocked() bool {
	m := op.m
	if op.need > m.okGen {
		return false
	}
	// The write's marks are durable: the last successful flush covered
	// them (need <= okGen).
	if op.anySync && m.logFailure && m.opts.HandleErrors {
		return false
	}
	return op.anySync || !m.opts.HandleErrors || m.opts.KeepLog || !anyFailed(m.cfg.Load())
}

// admit is the slow path, under m.mu: it counts the write once its
// regions are free (unless countFast did), waits for its marks to be
// durable and for earlier overlapping writes, and loads the leg set. A
// write that fails here was issued to no leg.
func (op *writeOp) admit() error {
	m := op.m
	m.mu.Lock()
	defer m.mu.Unlock()
	for {
		if !op.counted {
			op.countWhenFreeLocked()
		}
		op.counted = false
		err := op.waitMarksLocked()
		if err == nil {
			break
		}
		op.uncountLocked()
		if err == errHold {
			if err := op.waitReleaseLocked(); err != nil {
				m.home(op.mask).count(op.p == nil, op.n, false)
				return err
			}
			continue // counted afresh: the regions may have changed
		}
		m.home(op.mask).count(op.p == nil, op.n, false)
		return err
	}
	op.waitOrderLocked()
	op.cfg = m.cfg.Load()
	return nil
}

// countWhenFreeLocked waits until no region of the write is quiesced
// (held for recovery, verify or a join copy) and every region's state is
// known, then counts the write.
func (op *writeOp) countWhenFreeLocked() {
	m := op.m
retry:
	for r := op.rlo; r <= op.rhi; r++ {
		if e := m.entry(r); e != nil && e.quiesced {
			m.wait()
			goto retry
		}
	}
	// Learn every region's state before changing any (a remote log may
	// make lookupLocked drop the lock).
	for r := op.rlo; r <= op.rhi; r++ {
		if _, err := m.lookupLocked(r); err == errRetry {
			goto retry
		}
	}
	for r := op.rlo; r <= op.rhi; r++ {
		op.ents[r-op.rlo] = m.entry(r)
	}
	op.countLocked()
}

// countLocked counts the write on each region (the kernel's rh_inc),
// marks the in-sync regions not yet marked (the mark is durable only after
// the flush of generation op.need), records the routing and takes the
// write's order ticket. op.ents must hold the hashed entries; the write's
// shards (or m.mu) must be held.
func (op *writeOp) countLocked() {
	m := op.m
	op.routes, op.need, op.anySync = op.routes[:0], 0, false
	for i, e := range op.ents {
		r := op.rlo + dirtylog.Region(i)
		e.pending++
		op.routes = append(op.routes, e.inSync)
		if !e.inSync {
			continue // NOSYNC: default leg only, not marked
		}
		op.anySync = true
		if !e.dirty {
			m.log.MarkRegion(r) // the mark, in memory: durable at flush op.need
			e.dirty = true
			if m.volatile {
				e.markGen = 0
			} else {
				e.markGen = m.flushStarted + 1
			}
		} else if e.pending == 1 {
			m.shardOf(r).idleDirty-- // it was waiting to be cleared
		}
		op.need = max(op.need, e.markGen)
	}
	m.takeTicketLocked(&op.t, op.off, op.off+op.n)
}

// waitMarksLocked applies the error handling that may stop a write before
// its legs and waits for the log flush that makes its marks durable. It
// returns errHold for a write to be held (HandleErrors), or an error
// wrapping ErrLogFailed.
func (op *writeOp) waitMarksLocked() error {
	m := op.m
	switch {
	case op.anySync && m.logFailure && m.opts.HandleErrors:
		// The kernel does not issue writes after a log failure with
		// handle_errors.
		return fmt.Errorf("%w: log failed earlier (handle_errors)", ErrLogFailed)
	case op.need > 0:
		if err := m.waitFlushLocked(op.need); err != nil {
			return err
		}
		// The write's marks are durable from here on.
	default:
		m.stats.flushSkips.Add(1)
	}
	if !op.anySync && m.opts.HandleErrors && !m.opts.KeepLog && anyFailed(m.cfg.Load()) {
		// Kernel: nosync writes go to failures when a leg failed.
		return errHold
	}
	return nil
}

// waitReleaseLocked waits, with m.mu dropped, until held writes are
// released (ReplaceLeg or Close); it fails if the mirror closed.
func (op *writeOp) waitReleaseLocked() error {
	m := op.m
	if held := m.held; !m.closed.Load() {
		m.mu.Unlock()
		<-held
		m.mu.Lock()
	}
	if m.closed.Load() {
		return errHeldClosed
	}
	return nil
}

// waitOrderLocked waits for every earlier overlapping write to complete:
// one order on every leg.
func (op *writeOp) waitOrderLocked() {
	for op.m.overlapsEarlierLocked(&op.t) {
		op.m.wait()
	}
}

// uncountLocked drops the write's pending counts (the kernel's rh_dec)
// and its ticket. A region whose last write this was waits to be cleared.
// The write's shards (or m.mu) must be held.
func (op *writeOp) uncountLocked() {
	m := op.m
	for i, e := range op.ents {
		r := op.rlo + dirtylog.Region(i)
		e.pending--
		if e.pending > 0 {
			continue
		}
		if e.dirty {
			e.idle = m.clearEpoch
			m.shardOf(r).idleDirty++
			if m.opts.clearDelay() == 0 || !m.clearArmed.Load() {
				// Arm the clear timer, or clear now. The flusher disarms
				// under m.mu, after which this region's count is either
				// seen by it or this load sees the timer disarmed.
				m.kick()
			}
		}
		m.dropIfIdleLocked(r, e)
	}
	m.dropTicketLocked(&op.t)
	m.wakeWaiters()
}

func anyFailed(c *config) bool {
	for _, l := range c.legs {
		if l.failed() {
			return true
		}
	}
	return false
}
