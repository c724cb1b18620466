package logwrites

import (
	"errors"
	"fmt"
	"io"
)

// Staged reads. A large entry's data is read from the log with a read of
// its own, together with the header block that follows it, into a staging
// buffer just after the data of the previous staged entry. Consecutive
// staged entries that write contiguous target ranges then sit contiguously
// in the buffer and are written to the target with one WriteAt (a run),
// with no extra copy. On memory this matters: Go's memmove copies of 1 MiB
// or more use non-temporal stores, and data read in pieces smaller than the
// cache stays cached until it is written. Small entries are read through
// the read-ahead window (one read for many entries) and written one by one.
const (
	// stageMin is the least data an entry (or the part of it not yet
	// resident in the window) must have to be staged: one log read per
	// entry is then cheap next to the copy.
	stageMin = 32 << 10
	// stageMaxSector is the largest sector size for which entries are
	// staged (the header block after the data is read with it).
	stageMaxSector = 64 << 10
	// stageSize is the staging buffer's largest size: a run of up to
	// replayChunk bytes plus the next header block. It does not depend on
	// the entries' sizes (see stageCap).
	stageSize = replayChunk + stageMaxSector
)

// stage is the staging buffer and the pending run. Not safe for concurrent
// use.
type stage struct {
	buf []byte
	// The last staged read: log bytes [off, off+n) are at buf[pos:pos+n].
	off    int64
	pos, n int
	runEnd int   // the pending run is buf[:runEnd] ...
	runOff int64 // ... to be written at this target offset
	run    []runEntry
}

// runEntry is an entry of the pending run, with the number of entries
// applied before it (for a ReplayError) and its data's length.
type runEntry struct {
	e       Entry
	applied uint64
	n       int
}

// resident returns log bytes [off, off+n) if the last staged read holds them.
func (st *stage) resident(off int64, n int) ([]byte, bool) {
	if off < st.off || off+int64(n) > st.off+int64(st.n) {
		return nil, false
	}
	i := st.pos + int(off-st.off)
	return st.buf[i : i+n], true
}

// stageCap returns the size of the staging buffer for a log read through
// window w, with sector size s: stageSize, or less for a log smaller than
// replayChunk, as the window is. newWindow found the log shorter than 16
// windows; probing narrows that to a power of two.
func stageCap(w *window, s int) int {
	if w.size >= replayChunk {
		return stageSize
	}
	size := 2 * w.size
	var one [1]byte
	for size < 16*w.size {
		if n, _ := w.r.ReadAt(one[:], int64(size-1)); n != 1 {
			break
		}
		size *= 2
	}
	return min(stageSize, size+s)
}

// stageable reports whether the n bytes of data left to write (of an entry
// of the log) are read with a staged read.
func (rp *replayer) stageable(n int64) bool {
	return rp.s <= stageMaxSector && n >= stageMin && n+int64(rp.s) <= int64(rp.stageCap)
}

// stageData reads n bytes of data at log offset data, and the header block
// after them if the log has it, into the staging buffer, adding them to the
// pending run to be written at target offset off (the run is flushed first
// if they do not continue it or do not fit).
func (rp *replayer) stageData(e Entry, applied uint64, data, off, n int64) error {
	st := rp.st
	if st == nil {
		st = &stage{buf: make([]byte, rp.stageCap)}
		rp.st = st
	}
	if st.runEnd > 0 && (off != st.runOff+int64(st.runEnd) || st.runEnd+int(n)+rp.s > len(st.buf)) {
		if err := rp.flushRun(); err != nil {
			return err
		}
	}
	if st.runEnd == 0 {
		st.runOff = off
	}
	pos := st.runEnd
	m, err := rp.log.r.ReadAt(st.buf[pos:pos+int(n)+rp.s], data)
	st.off, st.pos, st.n = data, pos, m
	if int64(m) < n {
		st.n = 0
		if err == nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			err = fmt.Errorf("%w: %d of %d bytes at offset %d", ErrTruncated, m, n, data)
		}
		return fmt.Errorf("reading data: %w", err)
	}
	st.runEnd += int(n)
	st.run = append(st.run, runEntry{e: e, applied: applied, n: int(n)})
	return nil
}

// flushRun writes the pending run to the target. If the write fails, the
// run's entries are written one by one from the first byte not reported
// written, so that the error names the entry that fails and the entries
// before it are applied, as when each entry is written on its own.
func (rp *replayer) flushRun() error {
	st := rp.st
	if st == nil || st.runEnd == 0 {
		return nil
	}
	b := st.buf[:st.runEnd]
	w, err := rp.target.WriteAt(b, st.runOff)
	if err != nil {
		w = max(0, min(w, len(b)))
		for _, re := range st.run {
			if w >= re.n {
				w -= re.n
			} else {
				if _, err := rp.target.WriteAt(b[w:re.n], st.runOff+int64(w)); err != nil {
					st.resetRun()
					return &ReplayError{Entry: re.e, Applied: re.applied, Err: fmt.Errorf("writing to the replay target: %w", err)}
				}
				w = 0
			}
			b, st.runOff = b[re.n:], st.runOff+int64(re.n)
		}
	}
	st.resetRun()
	return nil
}

func (st *stage) resetRun() {
	st.runEnd = 0
	clear(st.run) // drop the entries' mark strings
	st.run = st.run[:0]
}
