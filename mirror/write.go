package mirror

import (
	"errors"
	"fmt"
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
//     parallel (or in turn, for legs faster than a goroutine hand-off);
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
	op := writeOps.Get().(*writeOp)
	op.start(m, p, off, n)
	op.fua = fua
	err := op.run()
	op.release()
	return err
}

// writeOp is one write (or discard) from WriteAt to its completion: the
// kernel's bio on its way through do_write and write_callback. Its steps
// are its methods, run in this order by run:
//
//  1. start: the byte range, its regions and their shards.
//  2. countFast (write.go's fast path) or admitLocked (the slow path):
//     count the write on each region and mark the in-sync ones in the log
//     (countLocked), take an order ticket, then wait for what must come
//     first: a quiesced region, the log flush that makes the marks durable
//     (waitMarksLocked), an earlier overlapping write (waitOrderLocked).
//  3. issue: the leg writes start (startLegs), in parallel, and their
//     errors are settled (settle).
//  4. complete: the counts and the ticket are dropped; a held write waits
//     for its release.
//
// A writeOp is pooled: the scratch buffers and the per-leg functions
// (legFn) are made once, so a write to an already marked region does not
// allocate. Every field is owned by the goroutine running the write,
// except t (guarded by the shard locks of t.mask, see ticket) and the
// segments' errs slots, each written by one leg goroutine before wg.Done.
type writeOp struct {
	m *Mirror

	// The request (start); read-only afterwards.
	p        []byte // nil for a discard
	off, n   int64
	fua      bool // sync each leg after writing it (WriteAtFUA)
	rlo, rhi dirtylog.Region
	mask     uint64 // the shards of rlo..rhi

	// The counting (countLocked); read-only once the write is issued.
	t       ticket    // in the inflight lists of t.mask from count to complete
	ents    []*region // the counted entries of rlo..rhi (hashed while pending)
	routes  []bool    // per region from rlo: true = every leg, false = default leg only
	need    uint64    // flush generation that makes the marks durable (0: none)
	anySync bool      // some region is in sync (so the log matters)
	counted bool      // counted by the fast path, not yet issued

	// The issue (issue); cfg is the leg set the write goes to.
	cfg   *config
	segs  []segment
	wg    sync.WaitGroup
	legFn [MaxLegs]func() // legFn[i] writes leg i's segments, then wg.Done

	sample bool // time the leg writes (startLegs sets it before they start)

	segBuf   [1]segment
	errBuf   [MaxLegs]error
	routeBuf [4]bool
	entBuf   [4]*region
}

var writeOps = sync.Pool{New: func() any { return newWriteOp() }}

func newWriteOp() *writeOp {
	op := new(writeOp)
	for i := range op.legFn {
		op.legFn[i] = func() {
			op.writeLegSegments(i)
			op.wg.Done()
		}
	}
	return op
}

// start sets up op for n bytes of p (nil: a discard) at off on m.
func (op *writeOp) start(m *Mirror, p []byte, off, n int64) {
	op.m, op.p, op.off, op.n = m, p, off, n
	op.rlo, op.rhi = m.regionOf(off), m.regionOf(off+n-1)
	op.mask = shardMask(op.rlo, op.rhi)
	k := int(op.rhi-op.rlo) + 1
	if k <= len(op.entBuf) {
		op.ents, op.routes = op.entBuf[:k], op.routeBuf[:0]
	} else {
		op.ents, op.routes = make([]*region, k), make([]bool, 0, k)
	}
}

// release clears op of every reference and returns it to the pool.
func (op *writeOp) release() {
	clear(op.entBuf[:])
	clear(op.errBuf[:])
	op.segBuf = [1]segment{}
	op.m, op.p, op.cfg, op.ents, op.routes, op.segs = nil, nil, nil, nil, nil, nil
	op.t.lo, op.t.hi, op.t.seq, op.t.mask = 0, 0, 0, 0
	op.need, op.anySync, op.counted, op.fua = 0, false, false, false
	writeOps.Put(op)
}

// run is the write path, top to bottom.
func (op *writeOp) run() error {
	m := op.m
	slot := m.slot(op.rlo)
	if !m.enterSlot(slot) {
		return ErrClosed
	}
	defer m.exitSlot(slot)
	if err := m.waitRemoteRecovering(op.rlo, op.rhi); err != nil {
		return err
	}
	if !op.countFast() {
		if err := op.admit(); err != nil {
			return err
		}
	}
	return op.complete(op.issue())
}

var errHold = errors.New("mirror: hold")

// errHeldClosed fails a write held after a leg failure when the mirror
// closes.
var errHeldClosed = fmt.Errorf("%w: write held after a leg failure, mirror closed", ErrIO)

// complete ends the write after its legs returned werr (from issue): its
// counts and ticket go, and a held write (errHold) waits for ReplaceLeg or
// Close to release it.
func (op *writeOp) complete(werr error) error {
	m := op.m
	m.lockShards(op.mask)
	op.uncountLocked()
	m.home(op.mask).count(op.p == nil, op.n, werr == nil)
	if werr != errHold {
		m.unlockShards(op.mask)
		return werr
	}
	m.stats.heldWrites.Add(1)
	closed := m.closed.Load()
	held := m.held
	m.unlockShards(op.mask)
	if closed {
		return errHeldClosed
	}
	<-held
	if m.closed.Load() {
		return errHeldClosed
	}
	return nil
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
