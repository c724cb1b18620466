package logwrites

import (
	"fmt"
	"io"
)

// ReplayOptions select which entries Replay applies and when it stops. The
// zero value replays the whole log. Each field corresponds to an option of
// fstests' replay-log (named in brackets), except --num-entries: replay-log
// prints the super block's count (not the entries left after the start
// point) and exits before replaying anything, so it selects no entries and
// is Log.NumEntries rather than a field here.
//
// ReplayOptions is a plain value, safe for concurrent use (its callbacks
// must be too, to share one between concurrent Replays); Replay and Find
// copy it. Its callbacks are called from the goroutine running Replay.
//
// Replay differs from replay-log where replay-log is a known pitfall: an
// end mark that is not in the log is an error (ErrMarkNotFound) and nothing
// is written; a discard always zeroes its range, whatever its size; the
// sector range filters discards too; a checker fails by returning an error
// or panicking, and either stops the replay.
type ReplayOptions struct {
	// StartEntry skips entries 0..StartEntry-1 without applying them
	// [--start-entry]. It must be below NumEntries unless it is 0.
	StartEntry uint64
	// StartMark skips entries up to and including the mark of that name,
	// and replays from the next one [--start-mark]. It overrides StartEntry.
	StartMark string
	// EndMark stops after the mark of that name [--end-mark]; the name must
	// match exactly.
	EndMark string
	// Limit stops after that many entries counted from the start point
	// [--limit]; 0 means no limit.
	Limit uint64
	// NextFlush / NextFUA stop after the first entry with the FLUSH / FUA
	// flag [--next-flush, --next-fua].
	NextFlush, NextFUA bool
	// Find writes nothing: Replay walks the entries from the start point,
	// reports the first one meeting a stop condition (Limit, NextFlush,
	// NextFUA, EndMark) to Progress as Found, and returns ErrNotFound if
	// none does [--find]. The Find function returns the entry directly.
	Find bool
	// NoDiscard ignores DISCARD entries [--no-discard].
	NoDiscard bool
	// StartSector and EndSector replay only writes and discards
	// overlapping the sectors [StartSector, EndSector) (in the log's sector
	// units; EndSector is exclusive, and 0 means no upper bound)
	// [--start-sector A --end-sector B is StartSector A, EndSector B+1].
	// Entries without a range (marks, empty flushes) always pass.
	StartSector, EndSector uint64
	// Checker, if set, is called with the target synced after every
	// CheckEvery-th entry replayed (counted from the start point) and after
	// each entry with a flag in CheckOn (FlagFlush, FlagFUA, FlagDiscard)
	// [--fsck, --check N|flush|fua|discard]. An error or a panic stops the
	// replay with a *ReplayError wrapping ErrCheck. The checker must not
	// change the target, or later entries are replayed over its changes:
	// a check that writes (a mount that runs journal recovery) works on a
	// copy or snapshot of the target. Explore's States are read-only.
	Checker func(e Entry) error
	// CheckEvery runs Checker after every CheckEvery-th entry replayed
	// (counted from the start point); 0 means not by count [--check N].
	CheckEvery uint64
	// CheckOn runs Checker after each entry with any of these flags
	// (FlagFlush, FlagFUA, FlagDiscard) [--check flush|fua|discard].
	CheckOn Flags
	// Progress, if set, is told about every entry Replay walks over and
	// what it did with it (replay-log's -v / -vv output).
	Progress func(e Entry, a Action)
	// Plan, if set, is told what Progress is told (every entry walked over
	// and its Action, in log order) but as soon as Replay knows it, not
	// once the entry is on the target: it does not make the replay
	// sequential. It suits output, such as replay-log's -v lines, that
	// does not look at the target. A missing start or end mark is found
	// before Plan is told anything; a bad entry stops the calls there.
	Plan func(e Entry, a Action)
	// Sequential applies every selected entry in log order, as replay-log
	// does, even where no Checker or Progress needs it; without it such a
	// replay is last-writer-wins (see Replay). The target is the same.
	Sequential bool
}

// Action says what Replay did with an entry, for ReplayOptions.Progress.
// It is a plain value, safe for concurrent use.
type Action int

// Actions.
const (
	Seeked   Action = iota // skipped to reach the start point, or walked over in Find mode
	Replayed               // applied to the target (or, for marks and empty flushes, consumed)
	Skipped                // filtered out (NoDiscard or the sector range)
	Found                  // the entry Find mode was looking for
)

// String names the action.
func (a Action) String() string {
	switch a {
	case Seeked:
		return "seek"
	case Replayed:
		return "replay"
	case Skipped:
		return "skip"
	case Found:
		return "found"
	}
	return fmt.Sprintf("Action(%d)", int(a))
}

// ReplayError is returned when Replay stops on an entry: the log is bad or
// unreadable there, the target failed, or the checker failed. Entries
// before it have been applied to the target. It is a plain value, safe to
// read from many goroutines.
type ReplayError struct {
	Entry   Entry  // the entry concerned (Index and Block are always set)
	Applied uint64 // entries applied (from the start point) before the error
	Err     error  // the cause: a log error (wrapping a sentinel), the target's error, or ErrCheck
}

// Error names the entry, its log block and how many entries were applied.
func (e *ReplayError) Error() string {
	return fmt.Sprintf("logwrites: replay stopped at entry %d (log block %d) after applying %d entries: %v",
		e.Entry.Index, e.Entry.Block, e.Applied, e.Err)
}

// Unwrap returns the cause.
func (e *ReplayError) Unwrap() error { return e.Err }

// replayChunk is the largest buffer Replay uses to copy data or zeros.
const replayChunk = 1 << 20

// Replay applies the entries of log selected by o to target, writing each
// write entry's data at its offset and zeroing discarded ranges, then syncs
// target if it has a Sync method. target may be nil in Find mode; otherwise
// a nil target is an error wrapping ErrNoTarget.
//
// With a Checker or Progress (a per-entry action) or Sequential, entries are
// applied one by one in log order. Otherwise the replay is last-writer-wins:
// Replay reads the headers of the selected entries first (no data), keeps
// which entry last wrote or discarded each byte range, and then writes only
// what survives, in target order, each range read straight from the log in
// large reads, with several reads and writes in flight (parallel ReadAt and
// WriteAt calls on distinct ranges, as io.ReaderAt and io.WriterAt allow;
// set Sequential for a log or target that cannot take them). The target
// ends up byte for byte as with the sequential replay, for every option;
// the differences are in what a failure leaves: a bad entry in the log
// still stops the replay with a *ReplayError naming it, after the ranges
// the entries before it leave have been written, but a failing target
// write is reported for the entry whose surviving range failed, with
// Applied 0 (which earlier entries reached the target is not known), and
// an entry entirely overwritten later is never written, so its range is
// never checked against the target's size.
//
// Replay onto a target that held a later state of the same device does not
// undo writes the replayed prefix does not cover: start from a copy of the
// device's initial contents for every prefix.
func Replay(log *Log, target io.WriterAt, o ReplayOptions) error {
	rp := replayer{log: log, target: target, o: o, s: log.SectorSize()}
	return rp.run()
}

// Find walks the entries from the start point selected by o and returns the
// first one meeting a stop condition (Limit, NextFlush, NextFUA, EndMark),
// as replay-log --find does. Its position in replay-log's "<index>@<pos>"
// output is e.NextBlock(). No stop condition found: ErrNotFound.
func Find(log *Log, o ReplayOptions) (Entry, error) {
	o.Find = true
	var found Entry
	prog := o.Progress
	o.Progress = func(e Entry, a Action) {
		if a == Found {
			found = e
		}
		if prog != nil {
			prog(e, a)
		}
	}
	err := Replay(log, nil, o)
	return found, err
}

type replayer struct {
	log      *Log
	target   io.WriterAt
	o        ReplayOptions
	s        int
	win      *window // read-ahead over the log
	st       *stage  // staging buffer for large entries; nil until one is staged
	staged   bool    // the last entry with data was staged (true at the start)
	stageCap int     // the staging buffer's size
	zeros    zeroSource
}

// ReadAt serves the log iterator's reads (headers, probes, mark names):
// from the last staged read if it holds them (the header after a staged
// entry), else from the read-ahead window. At the start and after a staged
// entry, a header the window does not hold is read on its own rather than
// by refilling the window, whose read-ahead would be wasted if the next
// entries are staged.
func (rp *replayer) ReadAt(p []byte, off int64) (int, error) {
	if rp.st != nil {
		if v, ok := rp.st.resident(off, len(p)); ok {
			return copy(p, v), nil
		}
	}
	if rp.staged && len(p) >= HeaderSize && !rp.win.holds(off, len(p)) {
		return rp.log.r.ReadAt(p, off)
	}
	return rp.win.ReadAt(p, off)
}

// fail returns err as a *ReplayError, flushing the pending run first: if
// that fails, its error (about an earlier entry) is returned instead.
func (rp *replayer) fail(e Entry, applied uint64, err error) error {
	if ferr := rp.flushRun(); ferr != nil {
		return ferr
	}
	if re, ok := err.(*ReplayError); ok {
		return re
	}
	return &ReplayError{Entry: e, Applied: applied, Err: err}
}

func (rp *replayer) progress(e Entry, a Action) {
	if rp.o.Plan != nil {
		rp.o.Plan(e, a)
	}
	if rp.o.Progress != nil {
		rp.o.Progress(e, a)
	}
}

func (rp *replayer) run() error {
	o := rp.o
	if !o.Find && rp.target == nil {
		return fmt.Errorf("%w: Replay got a nil target (only Find mode needs none)", ErrNoTarget)
	}
	if o.Checker != nil && o.CheckEvery == 0 && o.CheckOn == 0 {
		return fmt.Errorf("%w: ReplayOptions.Checker is set but CheckEvery is 0 and CheckOn is NONE (say after how many entries or at which flags to check)", ErrInvalidArgument)
	}
	if o.Checker == nil && (o.CheckEvery != 0 || o.CheckOn != 0) {
		return fmt.Errorf("%w: ReplayOptions.CheckEvery %d entries / CheckOn %v set without a Checker", ErrInvalidArgument, o.CheckEvery, o.CheckOn)
	}
	if o.StartMark == "" && o.StartEntry > 0 && o.StartEntry >= rp.log.NumEntries() {
		if rp.log.NumEntries() == 0 {
			return fmt.Errorf("%w: ReplayOptions.StartEntry %d, but the log has no entries", ErrInvalidEntry, o.StartEntry)
		}
		return fmt.Errorf("%w: ReplayOptions.StartEntry %d, but the log has %d entries (0 to %d)", ErrInvalidEntry, o.StartEntry, rp.log.NumEntries(), rp.log.NumEntries()-1)
	}
	if rp.lastWriterWins() {
		return rp.runLWW()
	}
	// Find the start point (and, before anything is written, check that the
	// end mark exists).
	start := o.StartEntry
	if o.StartMark != "" {
		e, err := rp.findMark(0, o.StartMark)
		if err != nil {
			return fmt.Errorf("start mark %q: %w", o.StartMark, err)
		}
		start = e.Index + 1
	}
	if o.EndMark != "" && !o.Find {
		if _, err := rp.findMark(start, o.EndMark); err != nil {
			return fmt.Errorf("end mark %q: %w", o.EndMark, err)
		}
	}
	var count, applied uint64
	var r io.ReaderAt = newHeaderReader(rp.log.r) // Find reads headers only
	if !o.Find {
		rp.win = newWindow(rp.log.r, replayChunk)
		rp.staged = true
		rp.stageCap = stageCap(rp.win, rp.s)
		rp.zeros.limit = rp.win.size
		r = rp
	}
	for e, err := range rp.log.entries(r) {
		if err != nil {
			return rp.fail(e, applied, err)
		}
		if e.Index < start {
			rp.progress(e, Seeked)
			continue
		}
		count++
		if o.Find {
			if rp.stop(e, count) {
				rp.progress(e, Found)
				return nil
			}
			rp.progress(e, Seeked)
			continue
		}
		act, err := rp.apply(e, applied)
		if err != nil {
			return rp.fail(e, applied, err)
		}
		applied++
		if o.Progress != nil {
			// Progress is told about an entry once it is on the target.
			if err := rp.flushRun(); err != nil {
				return err
			}
		}
		rp.progress(e, act)
		if o.Checker != nil && ((o.CheckEvery != 0 && count%o.CheckEvery == 0) || e.Flags&o.CheckOn != 0) {
			if err := rp.flushRun(); err != nil {
				return err
			}
			if err := rp.check(e); err != nil {
				return &ReplayError{Entry: e, Applied: applied, Err: err}
			}
		}
		if rp.stop(e, count) {
			break
		}
	}
	if o.Find {
		return ErrNotFound
	}
	if err := rp.flushRun(); err != nil {
		return err
	}
	if err := syncDev(rp.target); err != nil {
		return fmt.Errorf("logwrites: syncing the replay target: %w", err)
	}
	return nil
}

// findMark returns the first mark named name at or after entry from.
func (rp *replayer) findMark(from uint64, name string) (Entry, error) {
	for e, err := range rp.log.Entries() {
		if err != nil {
			// A bad entry before the mark: whether the mark exists is
			// unknown, so nothing is replayed and the error says why.
			return Entry{}, err
		}
		if e.Index >= from && e.isMark() && e.Mark == name {
			return e, nil
		}
	}
	return Entry{}, ErrMarkNotFound
}

func (rp *replayer) stop(e Entry, count uint64) bool {
	o := rp.o
	return (o.Limit != 0 && count >= o.Limit) ||
		(o.NextFlush && e.Flags&FlagFlush != 0) ||
		(o.NextFUA && e.Flags&FlagFUA != 0) ||
		(o.EndMark != "" && e.isMark() && e.Mark == o.EndMark)
}

func (rp *replayer) inRange(e Entry) bool {
	if e.NrSectors == 0 {
		return true
	}
	if e.Sector+e.NrSectors <= rp.o.StartSector {
		return false
	}
	return rp.o.EndSector == 0 || e.Sector < rp.o.EndSector
}

// zeroSource hands out zeros for discarded ranges. Its buffer is sized by
// the discards seen so far (doubling, so growing costs at most twice the
// final size) and by the log: never beyond limit, the size of a read-ahead
// window over the log (probeSize, up to replayChunk), so that a small log
// never allocates much more than its size however large its discards
// claim to be. A longer range is zeroed in chunks of limit bytes.
type zeroSource struct {
	buf   []byte
	limit int
}

// chunk returns min(n, limit) zero bytes, valid until the next call.
func (z *zeroSource) chunk(n int64) []byte {
	want := int(min(n, int64(z.limit)))
	if len(z.buf) < want {
		z.buf = make([]byte, min(max(want, 2*len(z.buf)), z.limit))
	}
	return z.buf[:want]
}

// apply replays one entry; applied is the number of entries applied before
// it. A write entry's data may be left in the pending run (see stage.go):
// anything else written to the target is written after the run is flushed.
func (rp *replayer) apply(e Entry, applied uint64) (Action, error) {
	s := rp.s
	switch {
	case e.Flags&FlagDiscard != 0:
		if rp.o.NoDiscard || !rp.inRange(e) {
			return Skipped, nil
		}
		if err := rp.flushRun(); err != nil {
			return Replayed, err
		}
		off, n := e.Offset(s), e.Length(s)
		for done := int64(0); done < n; {
			b := rp.zeros.chunk(n - done)
			if _, err := rp.target.WriteAt(b, off+done); err != nil {
				return Replayed, fmt.Errorf("zeroing discarded range: %w", err)
			}
			done += int64(len(b))
		}
		return Replayed, nil
	case !e.HasData():
		return Replayed, nil
	case !rp.inRange(e):
		return Skipped, nil
	}
	off, n := e.Offset(s), e.Length(s)
	data := int64(e.Block+1) * int64(s)
	rp.staged = false
	for done := int64(0); done < n; {
		if !rp.win.holds(data+done, 1) && rp.stageable(n-done) {
			// The rest of the data is not in the window: stage it.
			if err := rp.stageData(e, applied, data+done, off+done, n-done); err != nil {
				return Replayed, err
			}
			rp.staged = true
			return Replayed, nil
		}
		if err := rp.flushRun(); err != nil {
			return Replayed, err
		}
		b, err := rp.win.next(data+done, int(min(n-done, int64(rp.win.size))))
		if err != nil {
			return Replayed, fmt.Errorf("reading data: %w", err)
		}
		if _, err := rp.target.WriteAt(b, off+done); err != nil {
			return Replayed, fmt.Errorf("writing to the replay target: %w", err)
		}
		done += int64(len(b))
	}
	return Replayed, nil
}

// check syncs the target and runs the checker, turning a panic into an error.
func (rp *replayer) check(e Entry) (err error) {
	if err := syncDev(rp.target); err != nil {
		return fmt.Errorf("syncing the replay target: %w", err)
	}
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("%w: panic: %v", ErrCheck, v)
		}
	}()
	if err := rp.o.Checker(e); err != nil {
		return fmt.Errorf("%w: %w", ErrCheck, err)
	}
	return nil
}
