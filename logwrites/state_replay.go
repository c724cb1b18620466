package logwrites

import (
	"fmt"
	"io"
)

// ReplayState rebuilds the crash state d on target, which must hold a copy
// of the base image the state was explored from: it writes entries
// [0, d.Prefix) in log order, then the entries of d.Apply in that order:
// the first d.Durable whole, each later one except on the 512-byte blocks
// that a durable entry of d.Apply with a larger index covers, and of the
// torn one only the kept sectors. Discards are written as zeros.
// The result equals the State that Explore passed to its checker, byte for
// byte; use it to reproduce a failure on a real device or a file.
//
// ReplayState is last-writer-wins, like Replay without a per-entry action:
// it reads the headers it needs, plans which entry's bytes end up where,
// then writes only those, in target order, each range read straight from
// the log — from one goroutine, one write at a time. A log error (a bad
// entry before those the state needs) is reported before anything is
// written. It does not sync target.
func ReplayState(log *Log, d Description, target io.WriterAt) error {
	need := d.Prefix
	for _, i := range d.Apply {
		need = max(need, i+1)
	}
	if d.Durable < 0 || d.Durable > len(d.Apply) {
		return fmt.Errorf("%w: Durable %d with %d applied entries", ErrInvalidEntry, d.Durable, len(d.Apply))
	}
	if need > log.NumEntries() {
		return fmt.Errorf("%w: state needs entry %d, log has %d entries", ErrInvalidEntry, need-1, log.NumEntries())
	}
	pos := map[uint64]int{}
	for k, i := range d.Apply {
		pos[i] = k
	}
	later := make([]Entry, len(d.Apply))
	ss := log.SectorSize()
	rp := replayer{log: log, target: target, s: ss}
	var m extentMap
	for e, err := range log.Entries() {
		if e.Index >= need {
			break // what comes later (even a bad entry) does not matter
		}
		if err != nil {
			return err
		}
		if e.Index < d.Prefix {
			planEntry(&m, e, ss, nil)
		}
		if k, ok := pos[e.Index]; ok {
			later[k] = e
		}
	}
	for k, e := range later {
		var kept []SectorRange
		if d.Tear != nil && k == len(later)-1 {
			if d.Tear.Entry != e.Index {
				return fmt.Errorf("%w: torn entry %d is not the last applied (%d)", ErrInvalidEntry, d.Tear.Entry, e.Index)
			}
			kept = d.Tear.Kept
			n := uint64(e.Length(ss)) >> blockShift
			for _, r := range kept {
				if r.Start > r.End || r.End > n {
					return fmt.Errorf("%w: kept sectors %d-%d outside entry %d", ErrInvalidEntry, r.Start, r.End, e.Index)
				}
			}
		}
		if k >= d.Durable {
			// Not where a later durable write wrote: masked blocks,
			// counted from e's start.
			var mask []SectorRange
			lo, hi := blockRange(e, ss)
			for _, f := range later[:d.Durable] {
				if f.Index <= e.Index {
					continue
				}
				flo, fhi := blockRange(f, ss)
				if r := (SectorRange{max(lo, flo), min(hi, fhi)}); r.Start < r.End {
					mask = addRange(mask, SectorRange{r.Start - lo, r.End - lo})
				}
			}
			if mask != nil {
				if kept == nil {
					kept = []SectorRange{{0, hi - lo}}
				}
				if kept = subtractRanges(kept, mask); len(kept) == 0 {
					continue
				}
			}
		}
		planEntry(&m, e, ss, kept)
	}
	return rp.copyExtents(&m, 1)
}

// planEntry records in m what writing e (zeros for a discard; nothing for
// a mark or an empty flush) leaves on the target: the whole entry, or only
// its 512-byte sectors in kept if kept is not nil.
func planEntry(m *extentMap, e Entry, ss int, kept []SectorRange) {
	if e.Flags&FlagMark != 0 || e.NrSectors == 0 {
		return
	}
	off, n := e.Offset(ss), e.Length(ss)
	src := int64(-1)
	if e.HasData() {
		src = int64(e.Block+1) * int64(ss)
	}
	if kept == nil {
		kept = []SectorRange{{0, uint64(n) >> blockShift}}
	}
	for _, r := range kept {
		lo, hi := int64(r.Start)<<blockShift, int64(r.End)<<blockShift
		x := extent{start: off + lo, end: off + hi, src: -1, entry: e.Index, block: e.Block}
		if src >= 0 {
			x.src = src + lo
		}
		m.assign(x)
	}
}

// blockRange returns the 512-byte device blocks [lo, hi) that e writes
// (none for a mark).
func blockRange(e Entry, sectorSize int) (lo, hi uint64) {
	if e.Flags&FlagMark != 0 || e.NrSectors == 0 {
		return 0, 0
	}
	lo = uint64(e.Offset(sectorSize)) >> blockShift
	return lo, lo + uint64(e.Length(sectorSize))>>blockShift
}
