package logwrites

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

// StateKind says how Explore produced a crash state. It is a plain value,
// safe for concurrent use.
type StateKind int

const (
	// PrefixState: every entry before the cut, applied in log order, as
	// replay-log replays a prefix.
	PrefixState StateKind = iota
	// SubsetState: the writes made durable before the cut, plus a subset of
	// the writes that were not yet durable, in some order, the last one
	// possibly torn; none of those lands on a block that a durable write
	// later in log order wrote (see Explore).
	SubsetState
)

// String returns "prefix" or "subset".
func (k StateKind) String() string {
	switch k {
	case PrefixState:
		return "prefix"
	case SubsetState:
		return "subset"
	}
	return fmt.Sprintf("StateKind(%d)", int(k))
}

// SectorRange is a half-open range [Start, End) of 512-byte sectors,
// counted from the start of an entry's data. It is a plain value, safe for
// concurrent use.
type SectorRange struct {
	Start uint64 // first sector of the range
	End   uint64 // first sector after the range (exclusive)
}

// Tear describes a torn write: only some 512-byte sectors of the entry's
// data reached the device; the rest kept their previous contents. Like
// Description, it is plain data: safe to read from many goroutines, not to
// modify while others read it.
type Tear struct {
	Entry uint64        // index of the torn entry (always the last of Description.Apply)
	Kept  []SectorRange // the sectors that were written, in increasing order
}

// Description says exactly which device image a crash state is: onto a
// copy of the base image, replay entries [0, Prefix) in log order, then the
// entries in Apply, in that order: the first Durable of them whole, each
// later one only on the 512-byte blocks that no entry of Apply[:Durable]
// with a larger index covers, and the last one, if Tear is set, only on
// its kept sectors. ReplayState does just that. When no non-durable entry
// of Apply overlaps a later durable one (always so when Durable is 0), it
// is the same as ReplayOptions{Limit: Prefix} followed by writing the Apply
// entries in order.
//
// A Description is plain data: safe to read from many goroutines, not to
// modify while others read it (the States Explore hands out share theirs
// with nobody).
type Description struct {
	// ID numbers the states in generation order, from 0. For the same log,
	// base and options, the same ID always names the same state.
	ID int
	// Kind is how the state was produced.
	Kind StateKind
	// Cut is the power-cut point: no entry with Index >= Cut is in the state.
	Cut uint64
	// Prefix: entries [0, Prefix) are applied in log order. For a subset
	// state, Prefix is the index of the last FLUSH before the cut, which
	// made every earlier entry durable.
	Prefix uint64
	// Apply lists the entries applied after the prefix, in order: first the
	// durable ones after the flush (FUA writes), then the chosen subset of
	// the writes that were not durable yet. Empty for a prefix state.
	Apply []uint64
	// Durable is how many leading entries of Apply were durable at the cut
	// (FUA writes completed after the flush at Prefix, in log order). The
	// others, Apply[Durable:], are the chosen non-durable writes in the
	// order they reached the device; none of them lands on a block that a
	// durable entry with a larger index wrote (a later durable write is
	// never overwritten by an earlier write).
	Durable int
	// Dropped lists the non-durable writes and discards before the cut that
	// the state does not have, in log order.
	Dropped []uint64
	// Tear, if not nil, says that the last entry of Apply is torn.
	Tear *Tear
	// Mark is the name of the last mark logged before the cut ("" if none).
	Mark string
	// Seed is ExploreOptions.Seed, which chose the subset.
	Seed uint64
}

// String formats the description on one line, e.g.
// "state 12 (subset, seed 1): cut before entry 9 (after mark "m1"): entries 0..4 replayed, then durable 5, then 7, 6 (6 torn: kept sectors 0-1); dropped 8".
func (d Description) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "state %d (%v, seed %d): cut before entry %d", d.ID, d.Kind, d.Seed, d.Cut)
	if d.Mark != "" {
		fmt.Fprintf(&b, " (after mark %q)", d.Mark)
	}
	if d.Prefix == 0 {
		b.WriteString(": no entries replayed")
	} else {
		fmt.Fprintf(&b, ": entries 0..%d replayed", d.Prefix-1)
	}
	dur := min(max(d.Durable, 0), len(d.Apply))
	if dur > 0 {
		b.WriteString(", then durable ")
		b.WriteString(joinIdx(d.Apply[:dur]))
	}
	if len(d.Apply) > dur {
		b.WriteString(", then ")
		b.WriteString(joinIdx(d.Apply[dur:]))
	}
	if d.Tear != nil {
		fmt.Fprintf(&b, " (%d torn: kept sectors ", d.Tear.Entry)
		for i, r := range d.Tear.Kept {
			if i > 0 {
				b.WriteString(",")
			}
			if r.End-r.Start == 1 {
				fmt.Fprintf(&b, "%d", r.Start)
			} else {
				fmt.Fprintf(&b, "%d-%d", r.Start, r.End-1)
			}
		}
		b.WriteString(")")
	}
	if len(d.Dropped) > 0 {
		b.WriteString("; dropped ")
		b.WriteString(joinIdx(d.Dropped))
	}
	return b.String()
}

// joinIdx formats entry indices, runs of consecutive ones as "a..b".
func joinIdx(xs []uint64) string {
	var b strings.Builder
	for i := 0; i < len(xs); {
		j := i
		for j+1 < len(xs) && xs[j+1] == xs[j]+1 {
			j++
		}
		if i > 0 {
			b.WriteString(", ")
		}
		switch {
		case j-i >= 2:
			fmt.Fprintf(&b, "%d..%d", xs[i], xs[j])
		case j > i:
			fmt.Fprintf(&b, "%d, %d", xs[i], xs[j])
		default:
			fmt.Fprintf(&b, "%d", xs[i])
		}
		i = j + 1
	}
	return b.String()
}

// State is one device image a power cut could have left, with its
// Description. It reads as an io.ReaderAt over the whole device.
//
// A State is immutable: its contents never change, it stays valid after the
// check that received it returns, and it is safe for concurrent use by
// multiple goroutines if the base image's ReadAt is.
type State struct {
	Description
	ov overlay
}

var _ io.ReaderAt = State{}

// ReadAt reads the state's image. Reading past Size returns io.EOF.
func (s State) ReadAt(p []byte, off int64) (int, error) {
	if s.ov.sh == nil {
		return 0, io.EOF
	}
	return s.ov.ReadAt(p, off)
}

// Size returns the device size in bytes.
func (s State) Size() int64 {
	if s.ov.sh == nil {
		return 0
	}
	return s.ov.sh.size
}

// Bytes returns a copy of the whole image.
func (s State) Bytes() ([]byte, error) {
	b := make([]byte, s.Size())
	if _, err := s.ReadAt(b, 0); err != nil && err != io.EOF {
		return nil, err
	}
	return b, nil
}

// addRange returns rs, a sorted list of disjoint, non-adjacent ranges, with
// r added (merged with the ranges it overlaps or touches). rs is not
// modified.
func addRange(rs []SectorRange, r SectorRange) []SectorRange {
	if r.Start >= r.End {
		return rs
	}
	out := make([]SectorRange, 0, len(rs)+1)
	i := 0
	for ; i < len(rs) && rs[i].End < r.Start; i++ {
		out = append(out, rs[i])
	}
	for ; i < len(rs) && rs[i].Start <= r.End; i++ {
		r.Start, r.End = min(r.Start, rs[i].Start), max(r.End, rs[i].End)
	}
	out = append(out, r)
	return append(out, rs[i:]...)
}

// subtractRanges returns the parts of the ranges in rs (in their order)
// that lie outside mask, a sorted list of disjoint ranges.
func subtractRanges(rs, mask []SectorRange) []SectorRange {
	out := make([]SectorRange, 0, len(rs)+len(mask))
	for _, r := range rs {
		lo := r.Start
		k, _ := slices.BinarySearchFunc(mask, lo, func(m SectorRange, t uint64) int {
			if m.End <= t {
				return -1
			}
			return 1
		})
		for ; k < len(mask) && mask[k].Start < r.End; k++ {
			if mask[k].Start > lo {
				out = append(out, SectorRange{lo, mask[k].Start})
			}
			lo = max(lo, mask[k].End)
		}
		if lo < r.End {
			out = append(out, SectorRange{lo, r.End})
		}
	}
	return out
}
