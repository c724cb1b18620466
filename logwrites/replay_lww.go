package logwrites

import (
	"fmt"
	"math"
	"sync"
)

// Last-writer-wins replay. A replay with no per-entry action (no Checker,
// no Progress) only has to leave the target as the sequential replay
// would, so it first reads the entry headers of the selected entries (no
// data), keeping in an extentMap which entry last wrote or discarded each
// byte range, then copies only what survives: each extent read straight
// from its place in the log, in target order, in jobs of up to
// lwwJobSize contiguous target bytes written with one WriteAt, with up to
// lwwInFlight jobs in flight. A log that overwrites its device many times
// is copied once.
//
// Jobs of 512 KiB measured best on the machine of BENCHMARKS.md (against
// 256 KiB, 1 MiB and 4 MiB, with 1, 2 or 4 in flight): large enough for
// few calls, small enough that the buffers in flight stay in the caches.
const (
	lwwJobSize  = 512 << 10
	lwwInFlight = 4
)

// jobBuffers keeps job buffers of lwwJobSize bytes between replays: a
// fresh multi-MiB buffer per replay costs its page faults every time.
var jobBuffers sync.Pool

func getJobBuffer(size int) []byte {
	if size == lwwJobSize {
		if b, ok := jobBuffers.Get().(*[]byte); ok {
			return *b
		}
	}
	return make([]byte, size)
}

func putJobBuffer(b []byte) {
	if len(b) == lwwJobSize {
		jobBuffers.Put(&b)
	}
}

// lastWriterWins reports whether Replay takes the last-writer-wins path.
func (rp *replayer) lastWriterWins() bool {
	o := rp.o
	return !o.Find && !o.Sequential && o.Checker == nil && o.Progress == nil
}

// runLWW plans the replay from the headers, then copies the surviving
// extents. Errors are those of the sequential path: a bad entry before a
// start or end mark is reported before anything is written; a bad entry
// in the replayed range stops the plan there, and what the entries before
// it leave is written before the *ReplayError is returned.
func (rp *replayer) runLWW() error {
	o := rp.o
	s := uint64(rp.s)
	start := o.StartEntry
	seeking := o.StartMark != "" // looking for the start mark
	stopped := false             // a stop condition was met: planning is over
	endSeen := o.EndMark == ""   // the end mark was found (or none is wanted)
	var m extentMap
	var count uint64
	var planErr error
	if o.Plan != nil && (o.StartMark != "" || o.EndMark != "") {
		// Plan is told nothing before the marks are known to be there, as
		// with the sequential path: look for them first (headers only).
		if seeking {
			e, err := rp.findMark(0, o.StartMark)
			if err != nil {
				return fmt.Errorf("start mark %q: %w", o.StartMark, err)
			}
			start, seeking = e.Index+1, false
		}
		if !endSeen {
			if _, err := rp.findMark(start, o.EndMark); err != nil {
				return fmt.Errorf("end mark %q: %w", o.EndMark, err)
			}
			// It is there: planning stops at it, and no entry before it
			// is bad.
			endSeen = true
		}
	}
	for e, err := range rp.log.entries(newHeaderReader(rp.log.r)) {
		if err != nil {
			switch {
			case seeking:
				return fmt.Errorf("start mark %q: %w", o.StartMark, err)
			case !endSeen:
				return fmt.Errorf("end mark %q: %w", o.EndMark, err)
			}
			var applied uint64
			if e.Index > start {
				applied = e.Index - start
			}
			planErr = &ReplayError{Entry: e, Applied: applied, Err: err}
			break
		}
		if seeking {
			if e.isMark() && e.Mark == o.StartMark {
				seeking = false
				start = e.Index + 1
			}
			continue
		}
		if e.Index < start {
			rp.planned(e, Seeked)
			continue
		}
		isEnd := o.EndMark != "" && e.isMark() && e.Mark == o.EndMark
		if stopped {
			// Planned already; only the end mark is still looked for, as
			// the sequential path checks that it exists before writing.
			if isEnd {
				endSeen = true
				break
			}
			continue
		}
		count++
		rp.planned(e, rp.plan(&m, e, s))
		if isEnd {
			endSeen = true
		}
		if rp.stop(e, count) {
			stopped = true
			if endSeen {
				break
			}
		}
	}
	switch {
	case seeking:
		return fmt.Errorf("start mark %q: %w", o.StartMark, ErrMarkNotFound)
	case !endSeen && planErr == nil:
		return fmt.Errorf("end mark %q: %w", o.EndMark, ErrMarkNotFound)
	}
	if err := rp.copyExtents(&m, lwwInFlight); err != nil {
		return err
	}
	if planErr != nil {
		return planErr
	}
	if err := syncDev(rp.target); err != nil {
		return fmt.Errorf("logwrites: syncing the replay target: %w", err)
	}
	return nil
}

// plan records entry e in m as the sequential path would apply it, and
// returns the Action the sequential path reports for it.
func (rp *replayer) plan(m *extentMap, e Entry, s uint64) Action {
	x := extent{start: int64(e.Sector * s), end: int64((e.Sector + e.NrSectors) * s), entry: e.Index, block: e.Block, src: -1}
	switch {
	case e.Flags&FlagDiscard != 0:
		if rp.o.NoDiscard || !rp.inRange(e) {
			return Skipped
		}
	case !e.HasData():
		return Replayed
	case !rp.inRange(e):
		return Skipped
	default:
		x.src = int64((e.Block + 1) * s)
	}
	m.assign(x)
	return Replayed
}

// planned tells Plan about e.
func (rp *replayer) planned(e Entry, a Action) {
	if rp.o.Plan != nil {
		rp.o.Plan(e, a)
	}
}

// copyPiece is one extent (or part of one) of a copy job: n bytes at
// target offset off, from log offset src or zeros (src < 0).
type copyPiece struct {
	off, n, src  int64
	entry, block uint64
}

// copyJob is a contiguous range of the target, filled from its pieces and
// written with one WriteAt.
type copyJob struct {
	seq    int
	off    int64
	n      int
	pieces []copyPiece
}

// copyExtents writes every extent of m to the target, with up to inFlight
// jobs at a time (1: one at a time, from the calling goroutine).
func (rp *replayer) copyExtents(m *extentMap, inFlight int) error {
	var data int64
	m.all(func(x extent) bool {
		if x.src >= 0 {
			data += x.end - x.start
		}
		return true
	})
	// Jobs are never much larger than the log's data (a small log with a
	// large discard zeroes it in chunks of a read-ahead window's size).
	size := int(min(lwwJobSize, max(data, int64(probeSize(rp.log.r, replayChunk)))))

	var (
		mu      sync.Mutex
		failed  bool
		errSeq  = math.MaxInt
		firstEr error
	)
	report := func(seq int, err error) {
		mu.Lock()
		defer mu.Unlock()
		failed = true
		if seq < errSeq {
			errSeq, firstEr = seq, err
		}
	}
	hasFailed := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return failed
	}

	jobs := make(chan *copyJob)
	free := make(chan *copyJob, lwwInFlight+1)
	var wg sync.WaitGroup
	workers := 0
	startWorker := func() {
		workers++
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := getJobBuffer(size)
			defer putJobBuffer(buf)
			for j := range jobs {
				if err := rp.runJob(j, buf); err != nil {
					report(j.seq, err)
				}
				select {
				case free <- j:
				default:
				}
			}
		}()
	}
	newJob := func() *copyJob {
		select {
		case j := <-free:
			j.pieces = j.pieces[:0]
			j.n = 0
			return j
		default:
			return &copyJob{}
		}
	}
	seq := 0
	cur := newJob()
	var inline []byte
	if inFlight <= 1 {
		inline = getJobBuffer(size)
		defer putJobBuffer(inline)
	}
	send := func() {
		if cur.n == 0 {
			return
		}
		cur.seq = seq
		seq++
		if inFlight <= 1 {
			if err := rp.runJob(cur, inline); err != nil {
				report(cur.seq, err)
			}
			cur.pieces, cur.n = cur.pieces[:0], 0
			return
		}
		if workers < inFlight {
			startWorker()
		}
		jobs <- cur
		cur = newJob()
	}
	m.all(func(x extent) bool {
		for x.start < x.end {
			if cur.n > 0 && (x.start != cur.off+int64(cur.n) || cur.n == size) {
				send()
				if hasFailed() {
					return false
				}
			}
			if cur.n == 0 {
				cur.off = x.start
			}
			n := min(x.end-x.start, int64(size-cur.n))
			cur.pieces = append(cur.pieces, copyPiece{off: x.start, n: n, src: x.src, entry: x.entry, block: x.block})
			cur.n += int(n)
			x = x.from(x.start + n)
		}
		return true
	})
	if !hasFailed() {
		send()
	}
	close(jobs)
	wg.Wait()
	return firstEr
}

// runJob reads a job's pieces into buf and writes them to the target.
func (rp *replayer) runJob(j *copyJob, buf []byte) error {
	b := buf[:j.n]
	for _, p := range j.pieces {
		v := b[p.off-j.off : p.off-j.off+p.n]
		if p.src < 0 {
			clear(v)
			continue
		}
		if err := readFull(rp.log.r, v, p.src); err != nil {
			return &ReplayError{Entry: Entry{Index: p.entry, Block: p.block}, Err: &EntryError{Index: p.entry, Block: p.block, Err: fmt.Errorf("reading data: %w", err)}}
		}
	}
	w, err := rp.target.WriteAt(b, j.off)
	if err == nil {
		return nil
	}
	// As the sequential path does for a run: finish piece by piece from
	// the first byte not reported written, naming the piece that fails.
	done := j.off + int64(max(0, min(w, len(b))))
	for _, p := range j.pieces {
		end := p.off + p.n
		if end <= done {
			continue
		}
		from := max(p.off, done)
		if _, err := rp.target.WriteAt(b[from-j.off:end-j.off], from); err != nil {
			return &ReplayError{Entry: Entry{Index: p.entry, Block: p.block}, Err: fmt.Errorf("writing to the replay target: %w", err)}
		}
	}
	return nil
}
