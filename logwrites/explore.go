package logwrites

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"sync"

	"golang.org/x/sync/errgroup"
)

// Defaults for ExploreOptions fields left zero.
const (
	DefaultMaxSubsetStates = 32     // subset states per cut (ExploreOptions.MaxSubsetStates)
	DefaultMaxStates       = 100000 // states checked in all (ExploreOptions.MaxStates)
)

// ExploreOptions configure Explore. The zero value explores prefix states at
// every FLUSH and FUA entry and up to DefaultMaxSubsetStates subset states
// per cut, without torn writes, with GOMAXPROCS parallel checks. It is a
// plain value, safe for concurrent use; Explore copies it and keeps no
// reference to it.
type ExploreOptions struct {
	// EveryEntry adds a prefix state after every entry, not only after
	// FLUSH and FUA entries (replay-log's --check 1 rather than --check flush/fua).
	EveryEntry bool
	// MaxSubsetStates bounds the subset states generated at each cut (the
	// end of each epoch). 0 means DefaultMaxSubsetStates; a negative value
	// disables subset states, leaving prefix states only.
	MaxSubsetStates int
	// MaxStates bounds the number of states checked in all. 0 means
	// DefaultMaxStates; a negative value means no bound. When the bound
	// stops exploration early, ExploreStats.Truncated is set.
	MaxStates int
	// Seed chooses the random subsets, orders and tears. The same log, base
	// and options (Parallel aside) always produce the same states with the
	// same IDs.
	Seed uint64
	// Tear adds torn writes: subset states in which only some 512-byte
	// sectors of the last non-durable write applied reached the device
	// (never over a later durable write, as for any non-durable write).
	Tear bool
	// Parallel is the number of checks run at once; 0 means
	// runtime.GOMAXPROCS(0).
	Parallel int
	// DeviceSize is the device size in bytes. 0 means: ask base for it
	// through a Size() int64 method (bytes.Reader, io.SectionReader,
	// testdev.Memory) or Stat (os.File).
	DeviceSize int64
}

// ExploreStats reports what Explore did. It is a plain value, safe for
// concurrent use.
type ExploreStats struct {
	Entries    uint64 // log entries read
	Cuts       int    // cuts at which subset states were generated
	States     int    // states the checker was called on
	Prefix     int    // of those, prefix states
	Subset     int    // of those, subset states (including torn ones)
	Torn       int    // of those, states with a torn write
	Duplicates int    // states skipped because the same image was already checked
	Truncated  bool   // MaxStates ended exploration before every state was generated
}

// StateError is returned by Explore when the checker fails on a state. It
// wraps ErrCheck and the checker's error (errors.Is works with both) and
// carries the state, whose Description says how to rebuild it with
// ReplayState and which stays readable. Like State, it is immutable and
// safe for concurrent use.
type StateError struct {
	State State // the crash state the checker failed on
	Err   error // the checker's error (or its panic, as an error)
}

// Error describes the failing state and the checker's error.
func (e *StateError) Error() string {
	return fmt.Sprintf("logwrites: crash state check failed: %v: %v", e.State.Description, e.Err)
}

// Unwrap returns ErrCheck and the checker's error.
func (e *StateError) Unwrap() []error { return []error{ErrCheck, e.Err} }

// Explore generates the device states a power cut during the recording of
// log could have left, starting from base (the device image the recording
// started from; nil means all zeros), and calls check on each.
//
// # States
//
// dm-log-writes logs a write when it completes, so log order is completion
// order. The log is cut into epochs by its FLUSH and FUA entries. At a
// cut (a power failure at some point of the log), a write or discard
// before the cut is durable if a FLUSH entry before the cut follows it, or
// if it is a FUA write (or the data of a FLUSH|FUA entry) that completed
// before the cut. Every other one is non-durable: the writes after the
// last FLUSH (including that FLUSH's own data, unless it is also FUA: a
// flush orders what came before, its data belongs to the next epoch), and
// a FUA write whose completion the cut precedes. Explore generates:
//
//   - prefix states: every entry up to and including each FLUSH or FUA
//     entry (or every entry, with EveryEntry), applied in log order, exactly
//     what Replay to that entry gives;
//   - subset states, at each cut just before a FLUSH or FUA entry completes
//     and at the end of the log: the durable writes, plus a subset of the
//     non-durable ones (systematic choices first, then random ones drawn
//     from Seed), up to MaxSubsetStates per cut. With Tear, the last
//     non-durable write applied may be torn at 512-byte granularity: only
//     some of its sectors reached the device.
//
// The ordering model of a subset state, block by block (512 bytes):
//
//   - durable writes are applied in log order, so each block that some
//     durable write covers holds the data of the last durable write to it,
//     unless a non-durable write that completed later overwrote it;
//   - the chosen non-durable writes land in any order among themselves
//     (the chosen order: Description.Apply after its first
//     Description.Durable entries), as in CrashMonkey, so an earlier one
//     may land over a later one. This over-approximates on purpose: the log
//     records completions, not submissions, so it cannot tell two writes to
//     a block that were in flight together (either may reach the medium
//     last) from two that were not (a well-behaved device keeps the later);
//     a checker that relies on the order of two non-durable writes to the
//     same block, without a flush between them, may see states its device
//     cannot produce;
//   - but a non-durable write never lands on a block that a durable write
//     later in log order covers: a device that acknowledged that later
//     write as stable never replaces it with data that was superseded
//     before it completed. Such a write still lands on its other blocks.
//     The same holds for the sectors a torn write kept.
//
// So in every state, each block that some durable write covers holds the
// data of the last durable write to it or data from a write that completed
// after it; a block no durable write covers holds the base image or data
// from any non-durable write to it. A durable write is never dropped.
// Each state's Description says which entries it holds, in which order,
// and ReplayState rebuilds it byte for byte from the log.
//
// States whose images are equal block for block (whatever writes produced
// them) are checked once (images are compared by a 128-bit hash of their
// overlay, kept up to date as the overlay is built), and at most MaxStates
// states are checked.
//
// To tell a checker what must have survived, log a mark after each
// operation the program acknowledged (Recorder.Mark after the fsync
// returned): Description.Mark is the last mark before the cut.
//
// # Cost
//
// States are immutable copy-on-write overlays over base: a tree of 512-byte
// blocks in which a state shares everything but the blocks it changes with
// the state it was derived from. Prefix states are built incrementally in
// entry order and subset states from the durable state of their cut; which
// blocks of each non-durable write later durable ones cover is kept up to
// date as FUA writes arrive (one pass over the epoch's non-durable writes
// each). So the work grows with the size of the log (times
// MaxSubsetStates), not with the square of the number of entries, and
// memory holds the log's data once.
// Reading a state costs a tree walk per block plus base reads.
//
// # Concurrency and failure
//
// States are generated by one goroutine in a deterministic order (their
// Description.ID) and checked by Parallel goroutines at once, so check must
// be safe for concurrent use; it is passed ctx itself. States are
// read-only and stay valid after check returns. When check returns an
// error (or panics), no new states are generated or checked, the checks
// already running finish, and Explore returns a *StateError for the
// failing state with the lowest ID, so the state reported does not depend
// on Parallel (if check does not give up early when its context is
// cancelled). The error wraps ErrCheck and the checker's error. When ctx is cancelled Explore stops, waits for the
// running checks and returns ctx's error. Explore starts no goroutine that
// outlives it.
func Explore(ctx context.Context, log *Log, base io.ReaderAt, o ExploreOptions, check func(ctx context.Context, s State) error) (ExploreStats, error) {
	var stats ExploreStats
	if log == nil || check == nil {
		return stats, fmt.Errorf("%w: Explore needs a log and a check function", ErrInvalidEntry)
	}
	size, err := deviceSize(base, o.DeviceSize)
	if err != nil {
		return stats, err
	}
	sh, err := newShape(base, size)
	if err != nil {
		return stats, err
	}
	par := o.Parallel
	if par <= 0 {
		par = runtime.GOMAXPROCS(0)
	}
	var (
		mu      sync.Mutex
		failed  *StateError
		errStop = errors.New("stop")
	)
	g, gctx := errgroup.WithContext(ctx)
	ch := make(chan State)
	gen := &generator{log: log, sh: sh, o: o}
	g.Go(func() error {
		defer close(ch)
		err := gen.run(gctx, func(s State) bool {
			select {
			case ch <- s:
				return true
			case <-gctx.Done():
				return false
			}
		})
		if gctx.Err() != nil {
			return nil // stopped by a failure or by ctx; reported below
		}
		return err
	})
	for range par {
		g.Go(func() error {
			for s := range ch {
				if ctx.Err() != nil {
					return nil
				}
				mu.Lock()
				skip := failed != nil && failed.State.ID < s.ID
				mu.Unlock()
				if skip {
					continue
				}
				err := runCheck(ctx, check, s)
				mu.Lock()
				stats.States++
				switch {
				case s.Kind == PrefixState:
					stats.Prefix++
				default:
					stats.Subset++
				}
				if s.Tear != nil {
					stats.Torn++
				}
				stop := false
				if err != nil && !(ctx.Err() != nil && errors.Is(err, ctx.Err())) {
					if failed == nil || s.ID < failed.State.ID {
						failed = &StateError{State: s, Err: err}
					}
					stop = true
				}
				mu.Unlock()
				if stop {
					if testHookCheckFailed != nil {
						testHookCheckFailed()
					}
					return errStop
				}
			}
			return nil
		})
	}
	werr := g.Wait()
	stats.Entries = gen.entries
	stats.Cuts = gen.cuts
	stats.Duplicates = gen.dups
	stats.Truncated = gen.truncated
	switch {
	case failed != nil:
		return stats, failed
	case ctx.Err() != nil:
		return stats, fmt.Errorf("logwrites: exploration stopped after %d states: %w", stats.States, ctx.Err())
	case werr != nil && werr != errStop:
		return stats, werr
	}
	return stats, nil
}

// testHookCheckFailed, if not nil, is called by a checking goroutine after
// it has recorded a failed check (so that no check of a later state starts
// from then on). Tests set it; it is nil otherwise.
var testHookCheckFailed func()

// runCheck calls check, turning a panic into an error.
func runCheck(ctx context.Context, check func(context.Context, State) error, s State) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("checker panicked: %v", r)
		}
	}()
	return check(ctx, s)
}

func deviceSize(base io.ReaderAt, size int64) (int64, error) {
	if size > 0 {
		return size, nil
	}
	if size < 0 {
		return 0, fmt.Errorf("%w: DeviceSize %d", ErrDeviceSize, size)
	}
	size, _, known, err := devSize(base)
	if err != nil {
		return 0, fmt.Errorf("logwrites: the base image: %w", err)
	}
	if !known {
		return 0, fmt.Errorf("%w: base has no Size method; set ExploreOptions.DeviceSize", ErrDeviceSize)
	}
	return size, nil
}

// xentry is a log entry loaded for exploration.
type xentry struct {
	e   Entry
	n   uint64 // number of 512-byte device blocks it changes (0: none)
	src *xsrc  // what it writes; nil if n == 0
}

// applyTo returns ov with x applied: only the sectors in tear (counted
// from the entry's start) if tear is not nil, and none of the device
// blocks in mask (sorted, disjoint, absolute).
func (x *xentry) applyTo(ov overlay, tear, mask []SectorRange) overlay {
	if x.n == 0 {
		return ov
	}
	switch {
	case mask != nil:
	case tear == nil:
		return ov.write(x.src, x.src.start, x.src.start+x.n)
	default:
		for _, r := range tear {
			ov = ov.write(x.src, x.src.start+r.Start, x.src.start+r.End)
		}
		return ov
	}
	rs := []SectorRange{{x.src.start, x.src.start + x.n}}
	if tear != nil {
		rs = make([]SectorRange, len(tear))
		for i, r := range tear {
			rs[i] = SectorRange{x.src.start + r.Start, x.src.start + r.End}
		}
	}
	for _, r := range subtractRanges(rs, mask) {
		ov = ov.write(x.src, r.Start, r.End)
	}
	return ov
}

// overlapRange returns the device blocks that x and y both write.
func overlapRange(x, y *xentry) SectorRange {
	return SectorRange{max(x.src.start, y.src.start), min(x.src.start+x.n, y.src.start+y.n)}
}

// generator walks the log once, keeping the overlay of the full prefix and
// the overlay of the durable writes, and emits states in a fixed order.
type generator struct {
	log *Log
	sh  *overlayShape
	o   ExploreOptions

	entries   uint64
	cuts      int
	dups      int
	truncated bool
}

func (g *generator) run(ctx context.Context, send func(State) bool) error {
	o := g.o
	maxSub := o.MaxSubsetStates
	if maxSub == 0 {
		maxSub = DefaultMaxSubsetStates
	}
	maxStates := o.MaxStates
	if maxStates == 0 {
		maxStates = DefaultMaxStates
	}
	ss := g.log.SectorSize()
	seen := map[sum128]bool{}
	nextID := 0
	// emit de-duplicates and sends; false means stop.
	emit := func(d Description, ov overlay) bool {
		if ctx.Err() != nil {
			return false
		}
		h := ov.hash()
		if seen[h] {
			g.dups++
			return true
		}
		if maxStates > 0 && nextID >= maxStates {
			g.truncated = true
			return false
		}
		seen[h] = true
		d.ID = nextID
		d.Seed = o.Seed
		nextID++
		return send(State{Description: d, ov: ov})
	}

	var (
		xs        []*xentry
		full      = overlay{sh: g.sh}
		durable   = overlay{sh: g.sh}
		lastFlush uint64   // entries before it are durable
		extra     []uint64 // durable entries applied after lastFlush
		volatile  []uint64 // non-durable entries since lastFlush, in log order
		// masks[k]: the device blocks of volatile[k] that a durable write
		// later in log order (an entry of extra) covers; volatile[k] never
		// lands there. Sorted, disjoint; nil if none.
		masks [][]SectorRange
		mark  string
	)
	// subsets emits the subset states of a cut; inflight is an entry whose
	// completion the cut precedes but which may have (partly) reached the
	// device (a FUA write), or nil.
	subsets := func(cut uint64, inflight *xentry) bool {
		if maxSub < 0 {
			return true
		}
		var cands []candidate
		for _, i := range volatile {
			cands = append(cands, candidate{index: i, sectors: xs[i].n})
		}
		if inflight != nil {
			// Not durable at this cut, and later than every durable write:
			// nothing masks it.
			cands = append(cands, candidate{index: inflight.e.Index, sectors: inflight.n})
		}
		if len(cands) == 0 {
			return true
		}
		g.cuts++
		for _, p := range subsetPlans(cands, maxSub, o.Tear, cutRNG(o.Seed, cut)) {
			ov := durable
			apply := slices.Clone(extra)
			in := make([]bool, len(cands))
			var tear *Tear
			for k, ci := range p.order {
				in[ci] = true
				x := xs[cands[ci].index]
				var t []SectorRange
				if k == len(p.order)-1 && p.tear != nil {
					t = p.tear
					tear = &Tear{Entry: x.e.Index, Kept: p.tear}
				}
				var m []SectorRange
				if ci < len(masks) {
					m = masks[ci]
				}
				ov = x.applyTo(ov, t, m)
				apply = append(apply, x.e.Index)
			}
			var dropped []uint64
			for ci, c := range cands {
				if !in[ci] {
					dropped = append(dropped, c.index)
				}
			}
			slices.Sort(dropped)
			d := Description{Kind: SubsetState, Cut: cut, Prefix: lastFlush, Apply: apply, Durable: len(extra), Dropped: dropped, Tear: tear, Mark: mark}
			if !emit(d, ov) {
				return false
			}
		}
		return true
	}

	for e, err := range g.log.Entries() {
		if err != nil {
			return err
		}
		g.entries++
		x := &xentry{e: e}
		if e.Flags&FlagMark == 0 && e.NrSectors > 0 {
			off, n := e.Offset(ss), e.Length(ss)
			if off > g.sh.size || n > g.sh.size-off {
				return &EntryError{Index: e.Index, Block: e.Block, Err: fmt.Errorf("%w: %d bytes at %d, device size %d", ErrDeviceSize, n, off, g.sh.size)}
			}
			x.n = uint64(n) >> blockShift
			var blks []blk
			if e.HasData() {
				buf := make([]byte, n)
				if err := g.log.ReadData(e, buf); err != nil {
					return err
				}
				blks = newBlks(buf)
			}
			var err error
			if x.src, err = g.sh.newSrc(uint64(off)>>blockShift, x.n, blks); err != nil {
				return err
			}
		}
		xs = append(xs, x)
		flush, fua := e.Flags&FlagFlush != 0, e.Flags&FlagFUA != 0
		before := full
		full = x.applyTo(full, nil, nil)
		if e.Flags&FlagMark != 0 {
			mark = e.Mark
		}
		// The prefix state through this entry comes first, so that when a
		// subset state has the same image it is the prefix state that is
		// checked (and counted as such).
		if flush || fua || o.EveryEntry {
			d := Description{Kind: PrefixState, Cut: e.Index + 1, Prefix: e.Index + 1, Mark: mark}
			if !emit(d, full) {
				return nil
			}
		}
		if flush || fua {
			// The cut just before this entry completed: the subsets of the
			// writes not yet durable (and of this one, if it is a FUA write
			// that may have been in flight).
			var inflight *xentry
			cut := e.Index
			if fua && !flush && x.n > 0 {
				inflight, cut = x, e.Index+1
			}
			if !subsets(cut, inflight) {
				return nil
			}
		}
		switch {
		case flush:
			durable, lastFlush, extra, volatile, masks = before, e.Index, nil, nil, nil
			if x.n > 0 {
				if fua {
					durable = x.applyTo(durable, nil, nil)
					extra = []uint64{e.Index}
				} else {
					volatile, masks = []uint64{e.Index}, [][]SectorRange{nil}
				}
			}
		case fua:
			if x.n > 0 {
				durable = x.applyTo(durable, nil, nil)
				extra = append(extra, e.Index)
				// The earlier non-durable writes can no longer land where
				// this one wrote.
				for k, i := range volatile {
					masks[k] = addRange(masks[k], overlapRange(xs[i], x))
				}
			}
		case x.n > 0:
			volatile, masks = append(volatile, e.Index), append(masks, nil)
		}
	}
	subsets(g.entries, nil)
	return nil
}
