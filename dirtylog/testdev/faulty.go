package testdev

import (
	"errors"
	"fmt"
	"io"
	"sync"
)

// ErrInjected is wrapped by every error a Faulty device injects.
var ErrInjected = errors.New("testdev: injected I/O error")

// Op is an I/O operation kind a Rule can match.
type Op int

const (
	OpRead Op = 1 << iota
	OpWrite
	OpSync
	OpDiscard
	// OpAny matches every operation.
	OpAny = OpRead | OpWrite | OpSync | OpDiscard
)

// String names the operation.
func (o Op) String() string {
	switch o {
	case OpRead:
		return "read"
	case OpWrite:
		return "write"
	case OpSync:
		return "sync"
	case OpDiscard:
		return "discard"
	case OpAny:
		return "any"
	}
	return fmt.Sprintf("Op(%#x)", int(o))
}

// Rule selects operations to fail. An operation matches when its kind is
// in Op and, for reads, writes and discards, its byte range overlaps
// [Off, Off+Len) (Len 0 means to the end of the device; Sync always
// matches the range). Matching operations are counted from 1; which of
// them fail is chosen by Nth, Every and From (all zero: every match fails).
type Rule struct {
	Label string // names the fault in the error text
	Op    Op
	Off   int64
	Len   int64
	Nth   int // fail only the Nth match
	Every int // fail every Every-th match
	From  int // fail the From-th match and every one after it
}

func (r *Rule) matches(op Op, off, n int64) bool {
	if r.Op&op == 0 {
		return false
	}
	if op == OpSync {
		return true
	}
	if off+max(n, 1) <= r.Off {
		return false
	}
	if r.Len > 0 && off >= r.Off+r.Len {
		return false
	}
	return true
}

func (r *Rule) fires(count int) bool {
	switch {
	case r.Nth > 0:
		return count == r.Nth
	case r.Every > 0:
		return count%r.Every == 0
	case r.From > 0:
		return count >= r.From
	}
	return true
}

// InjectedError is the error a Faulty device returns.
type InjectedError struct {
	Label string
	Op    Op
	Off   int64
	Len   int64
}

func (e *InjectedError) Error() string {
	return fmt.Sprintf("testdev: injected %s error %q at offset %d length %d", e.Op, e.Label, e.Off, e.Len)
}

// Unwrap makes errors.Is(err, ErrInjected) true.
func (e *InjectedError) Unwrap() error { return ErrInjected }

// Device is what Faulty wraps: a readable, writable device. Sync and
// Discard are passed through when the inner device has them.
type Device interface {
	io.ReaderAt
	io.WriterAt
}

// Faulty wraps a device and fails the operations its rules select.
// Rules can be added and cleared while the device is in use.
//
// Faulty is safe for concurrent use if the wrapped device is.
type Faulty struct {
	inner Device

	mu     sync.Mutex
	rules  []*rule
	counts map[Op]int64
}

type rule struct {
	Rule
	seen int
}

// NewFaulty wraps inner with no rules.
func NewFaulty(inner Device) *Faulty {
	return &Faulty{inner: inner, counts: map[Op]int64{}}
}

// Inner returns the wrapped device.
func (f *Faulty) Inner() Device { return f.inner }

// Add installs a rule.
func (f *Faulty) Add(r Rule) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules = append(f.rules, &rule{Rule: r})
}

// Clear removes every rule: the device heals.
func (f *Faulty) Clear() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules = nil
}

// Count returns how many operations of kind op were attempted.
func (f *Faulty) Count(op Op) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.counts[op]
}

func (f *Faulty) inject(op Op, off, n int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.counts[op]++
	var hit *rule
	for _, r := range f.rules {
		if !r.matches(op, off, n) {
			continue
		}
		r.seen++
		if hit == nil && r.fires(r.seen) {
			hit = r
		}
	}
	if hit != nil {
		return &InjectedError{Label: hit.Label, Op: op, Off: off, Len: n}
	}
	return nil
}

// ReadAt reads from the inner device unless a rule fails the read.
func (f *Faulty) ReadAt(p []byte, off int64) (int, error) {
	if err := f.inject(OpRead, off, int64(len(p))); err != nil {
		return 0, err
	}
	return f.inner.ReadAt(p, off)
}

// WriteAt writes to the inner device unless a rule fails the write; a
// failed write changes nothing.
func (f *Faulty) WriteAt(p []byte, off int64) (int, error) {
	if err := f.inject(OpWrite, off, int64(len(p))); err != nil {
		return 0, err
	}
	return f.inner.WriteAt(p, off)
}

// Sync syncs the inner device (if it can) unless a rule fails the sync.
func (f *Faulty) Sync() error {
	if err := f.inject(OpSync, 0, 0); err != nil {
		return err
	}
	if s, ok := f.inner.(interface{ Sync() error }); ok {
		return s.Sync()
	}
	return nil
}

// Discard discards on the inner device (if it can) unless a rule fails it.
func (f *Faulty) Discard(off, n int64) error {
	if err := f.inject(OpDiscard, off, n); err != nil {
		return err
	}
	if d, ok := f.inner.(interface{ Discard(off, n int64) error }); ok {
		return d.Discard(off, n)
	}
	return nil
}

// Size returns the inner device's size if it reports one, else -1.
func (f *Faulty) Size() int64 {
	if s, ok := f.inner.(interface{ Size() int64 }); ok {
		return s.Size()
	}
	return -1
}
