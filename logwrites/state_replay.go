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
// ReplayState reads log from one goroutine and writes target sequentially;
// it does not sync target.
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
	zeros := &zeroSource{limit: probeSize(log.r, replayChunk)}
	for e, err := range log.Entries() {
		if e.Index >= need {
			break // what comes later (even a bad entry) does not matter
		}
		if err != nil {
			return err
		}
		if e.Index < d.Prefix {
			if err := replayEntry(log, e, nil, target, zeros); err != nil {
				return err
			}
		}
		if k, ok := pos[e.Index]; ok {
			later[k] = e
		}
	}
	ss := log.SectorSize()
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
		if err := replayEntry(log, e, kept, target, zeros); err != nil {
			return err
		}
	}
	return nil
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

// replayEntry writes e's data (zeros for a discard) to target, only the
// 512-byte sectors in kept if kept is not nil. A write's data is read whole
// (the reader has checked that it is in the log, so the buffer is bounded
// by the log's size); a discard is zeroed in chunks from zeros, whatever
// its size.
func replayEntry(log *Log, e Entry, kept []SectorRange, target io.WriterAt, zeros *zeroSource) error {
	if e.Flags&FlagMark != 0 || e.NrSectors == 0 {
		return nil
	}
	ss := log.SectorSize()
	off, n := e.Offset(ss), e.Length(ss)
	var data []byte
	if e.HasData() {
		data = make([]byte, n)
		if err := log.ReadData(e, data); err != nil {
			return err
		}
	}
	if kept == nil {
		kept = []SectorRange{{0, uint64(n) >> blockShift}}
	}
	for _, r := range kept {
		if r.Start > r.End || r.End > uint64(n)>>blockShift {
			return fmt.Errorf("%w: kept sectors %d-%d outside entry %d", ErrInvalidEntry, r.Start, r.End, e.Index)
		}
		lo, hi := int64(r.Start)<<blockShift, int64(r.End)<<blockShift
		for lo < hi {
			var p []byte
			if data != nil {
				p = data[lo:hi]
			} else {
				p = zeros.chunk(hi - lo)
			}
			if _, err := target.WriteAt(p, off+lo); err != nil {
				return fmt.Errorf("logwrites: replaying entry %d: %w", e.Index, err)
			}
			lo += int64(len(p))
		}
	}
	return nil
}
