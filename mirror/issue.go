package mirror

import (
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"github.com/dmlog/dmlog/dirtylog"
)

// Issuing a counted, admitted write to its legs: the kernel's
// do_write dispatch and write_callback.

// segment is a run of a write's regions with one routing.
type segment struct {
	off, n   int64
	p        []byte // nil for a discard
	all      bool   // every leg; else the default leg only
	rlo, rhi dirtylog.Region
	errs     []error // per leg; slot i written only by leg i's writer
}

// issue writes the write to its legs per region routing, in parallel, and
// settles leg failures. It returns nil, errHold, or an error wrapping
// ErrIO.
func (op *writeOp) issue() error {
	op.split()
	op.startLegs()
	return op.settle()
}

// split cuts the write into segments of regions with the same routing.
func (op *writeOp) split() {
	m, nlegs := op.m, len(op.cfg.legs)
	op.segs = op.segBuf[:0]
	end := op.off + op.n
	for i := 0; i < len(op.routes); {
		j := i
		for j+1 < len(op.routes) && op.routes[j+1] == op.routes[i] {
			j++
		}
		rlo, rhi := op.rlo+dirtylog.Region(i), op.rlo+dirtylog.Region(j)
		so := max(op.off, int64(rlo)<<m.rshift)
		eo := min(end, int64(rhi+1)<<m.rshift)
		s := segment{off: so, n: eo - so, all: op.routes[i], rlo: rlo, rhi: rhi}
		if op.p != nil {
			s.p = op.p[so-op.off : eo-op.off]
		}
		op.segs = append(op.segs, s)
		i = j + 1
	}
	if len(op.segs) == 1 {
		op.segs[0].errs = op.errBuf[:nlegs]
		return
	}
	for i := range op.segs {
		op.segs[i].errs = make([]error, nlegs)
	}
}

// inlineLegNanos is the average leg write time below which a write's
// legs are written one after another on the writer's goroutine instead
// of in parallel: starting a goroutine and waiting for it (about a
// microsecond, mostly cross-core wake-ups) would cost more than the write
// itself. Memory legs and RAM disks are written inline; files, block
// devices and network legs, whose writes take longer, in parallel.
const inlineLegNanos = 1000

// inlineFastLegs enables the inline writing of fast legs; the benchmarks
// turn it off to measure the parallel path alone.
var inlineFastLegs = true

// sampleEvery is how often (one write in sampleEvery, at random, from
// the runtime's per-thread generator: no shared state) leg write times
// are measured.
const sampleEvery = 16

// startLegs is where a write's leg writes start. With slow legs each leg
// that takes part gets its own goroutine (the last one runs on this
// goroutine); with fast legs (inlineLegNanos) they are written in turn
// here. startLegs returns when every leg returned.
func (op *writeOp) startLegs() {
	all := false
	for i := range op.segs {
		all = all || op.segs[i].all
	}
	c := op.cfg
	op.sample = rand.Uint32()%sampleEvery == 0
	if !all {
		op.writeLegSegments(c.def)
		return
	}
	if inlineFastLegs && op.fastLegs() {
		for i := range c.legs {
			op.writeLegSegments(i) // the leg writes start here, in turn
		}
		return
	}
	last := len(c.legs) - 1
	for i := range last {
		op.wg.Add(1)
		go op.legFn[i]() // the leg writes start here, in parallel
	}
	op.writeLegSegments(last)
	op.wg.Wait()
}

// fastLegs reports whether every leg's writes average under
// inlineLegNanos.
func (op *writeOp) fastLegs() bool {
	for _, l := range op.cfg.legs {
		if l.writeNanos.Load() >= inlineLegNanos {
			return false
		}
	}
	return true
}

// writeLegSegments writes leg i's segments in order, timing them when
// the write samples leg times.
func (op *writeOp) writeLegSegments(i int) {
	l := op.cfg.legs[i]
	var start time.Time
	if op.sample {
		start = time.Now()
	}
	for si := range op.segs {
		s := &op.segs[si]
		if s.all || i == op.cfg.def {
			s.errs[i] = op.writeLeg(l, s)
		}
	}
	if op.sample {
		l.noteWriteTime(time.Since(start))
	}
}

// writeLeg writes s to leg l, or discards it there: with the leg's
// Discard if it has one and it succeeds, else by writing zeroes. For a
// FUA write the leg is then synced; a failed sync is the write's error,
// so the leg is failed as for a failed write.
func (op *writeOp) writeLeg(l *legState, s *segment) error {
	err := op.m.writeLegData(l, s)
	if err == nil && op.fua {
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

// settle handles the legs' errors (the kernel's write_callback): a leg
// that failed is failed, its regions go out of sync, and the write is
// acknowledged only if the default leg holds it.
func (op *writeOp) settle() error {
	var failedErr error
	hold := false
	for si := range op.segs {
		err, h := op.settleSegment(&op.segs[si])
		if err != nil {
			failedErr = err
		}
		hold = hold || h
	}
	if failedErr != nil {
		return failedErr
	}
	if hold {
		return errHold
	}
	return nil
}

// settleSegment settles s: it returns the error that fails the write, or
// hold if the write is to be held (HandleErrors).
func (op *writeOp) settleSegment(s *segment) (_ error, hold bool) {
	m, c := op.m, op.cfg
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
		return nil, false
	}
	m.mu.Lock()
	if s.all {
		// The kernel skips this after a log failure (it cannot record it
		// durably); the mirror still must not read or resync the region
		// as if its legs agreed, so it always goes out of sync.
		for r := s.rlo; r <= s.rhi; r++ {
			m.setOutOfSyncLocked(r, m.entry(r))
		}
	}
	logFailed := m.logFailure
	m.mu.Unlock()
	// Acknowledge only what the default leg holds: it is the source of
	// every out-of-sync region's reads and resync. (The kernel completes a
	// write that failed on the default leg if another leg took it, then
	// resyncs the old data over it.)
	nc := m.cfg.Load()
	onDefault := false
	for i, l := range c.legs {
		if l == nc.legs[nc.def] && s.errs[i] == nil && (s.all || i == c.def) {
			onDefault = true
		}
	}
	switch {
	case written == 0:
		return fmt.Errorf("%w: no leg holds the write at %d: %w", ErrIO, s.off, legErr), false
	case !onDefault:
		return fmt.Errorf("%w: the write at %d failed on the default leg %s, and no healthy in-sync leg could take over: %w",
			ErrIO, s.off, nc.legs[nc.def].name, legErr), false
	case m.opts.KeepLog && logFailed:
		return fmt.Errorf("%w: the write at %d failed on a leg after the log failed (keep_log): %w", ErrIO, s.off, legErr), false
	case m.opts.HandleErrors && !m.opts.KeepLog:
		return nil, true
	}
	return nil, false
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
