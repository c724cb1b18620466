package testdev

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
)

// SectorSize is the granularity at which Crash tears a write.
const SectorSize = 512

// ErrOutOfRange is returned for I/O that starts or ends outside the device.
var ErrOutOfRange = errors.New("testdev: I/O beyond end of device")

// Memory is an in-memory block device. Writes are visible to reads at once
// but are volatile until Sync: Crash discards some or all of the writes
// issued since the last Sync, as a power cut would. After Crash the device
// is a new, consistent device holding what survived.
//
// Memory is safe for concurrent use.
type Memory struct {
	mu      sync.Mutex
	cur     []byte   // what reads see
	durable []byte   // what survives a crash
	pending []pwrite // unsynced writes, in issue order
	stats   Stats
}

type pwrite struct {
	off  int64
	data []byte
}

// Stats counts the operations a Memory device has served.
type Stats struct {
	Reads, Writes, Syncs, Discards int64
	BytesRead, BytesWritten        int64
}

// NewMemory returns a zero-filled device of size bytes.
func NewMemory(size int64) *Memory {
	return &Memory{cur: make([]byte, size), durable: make([]byte, size)}
}

// NewMemoryFrom returns a device whose durable contents are a copy of b.
func NewMemoryFrom(b []byte) *Memory {
	m := NewMemory(int64(len(b)))
	copy(m.cur, b)
	copy(m.durable, b)
	return m
}

// Size returns the device size in bytes.
func (m *Memory) Size() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return int64(len(m.cur))
}

func (m *Memory) check(off int64, n int) error {
	if off < 0 || off > int64(len(m.cur)) || int64(n) > int64(len(m.cur))-off {
		return fmt.Errorf("%w: offset %d length %d size %d", ErrOutOfRange, off, n, len(m.cur))
	}
	return nil
}

// ReadAt reads the current (possibly unsynced) contents. Reading past the
// end returns io.EOF with the bytes that were available.
func (m *Memory) ReadAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if off < 0 {
		return 0, fmt.Errorf("%w: negative offset %d", ErrOutOfRange, off)
	}
	if off >= int64(len(m.cur)) {
		return 0, io.EOF
	}
	n := copy(p, m.cur[off:])
	m.stats.Reads++
	m.stats.BytesRead += int64(n)
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// WriteAt writes p at off. The write is volatile until the next Sync.
func (m *Memory) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(off, len(p)); err != nil {
		return 0, err
	}
	copy(m.cur[off:], p)
	m.pending = append(m.pending, pwrite{off: off, data: append([]byte(nil), p...)})
	m.stats.Writes++
	m.stats.BytesWritten += int64(len(p))
	return len(p), nil
}

// Discard zeroes n bytes at off, volatile until Sync like a write.
func (m *Memory) Discard(off, n int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if n < 0 || n > int64(len(m.cur)) {
		return fmt.Errorf("%w: discard length %d", ErrOutOfRange, n)
	}
	if err := m.check(off, int(n)); err != nil {
		return err
	}
	clear(m.cur[off : off+n])
	m.pending = append(m.pending, pwrite{off: off, data: make([]byte, n)})
	m.stats.Discards++
	return nil
}

// Sync makes every write issued so far durable.
func (m *Memory) Sync() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, w := range m.pending {
		copy(m.durable[w.off:], w.data)
	}
	m.pending = m.pending[:0]
	m.stats.Syncs++
	return nil
}

// Pending returns the number of writes not yet made durable by Sync.
func (m *Memory) Pending() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.pending)
}

// Stats returns the operation counters.
func (m *Memory) Stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stats
}

// ResetStats zeroes the operation counters.
func (m *Memory) ResetStats() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.stats = Stats{}
}

// Bytes returns a copy of the current contents, unsynced writes included.
func (m *Memory) Bytes() []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]byte(nil), m.cur...)
}

// DurableBytes returns a copy of what would survive a crash that drops
// every unsynced write.
func (m *Memory) DurableBytes() []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]byte(nil), m.durable...)
}

// CrashMode selects which unsynced writes survive a Crash.
type CrashMode int

const (
	// DropAll loses every write since the last Sync.
	DropAll CrashMode = iota
	// KeepRandom keeps each unsynced write with probability one half,
	// chosen from the seed; survivors are applied in issue order.
	KeepRandom
	// KeepAll keeps every unsynced write (the power cut came after the
	// device had written everything back).
	KeepAll
)

// String names the mode.
func (c CrashMode) String() string {
	switch c {
	case DropAll:
		return "drop-all"
	case KeepRandom:
		return "keep-random"
	case KeepAll:
		return "keep-all"
	}
	return fmt.Sprintf("CrashMode(%d)", int(c))
}

// CrashOptions describes a simulated power cut.
type CrashOptions struct {
	Mode CrashMode
	// Seed drives every random choice, so a crash can be reproduced.
	Seed uint64
	// Tear, if true, picks one unsynced write (seeded) and keeps only a
	// random subset of its 512-byte sectors, whatever Mode decided for it.
	Tear bool
}

// CrashReport says what a Crash kept.
type CrashReport struct {
	Pending int   // unsynced writes at the time of the crash
	Kept    int   // writes applied whole
	Torn    int   // index of the torn write in issue order, or -1
	TornAt  []int // sectors of the torn write that survived
}

// Crash simulates a power cut: the device keeps its durable contents plus
// the unsynced writes selected by o, and all of it becomes durable. The
// device remains usable afterwards.
func (m *Memory) Crash(o CrashOptions) CrashReport {
	m.mu.Lock()
	defer m.mu.Unlock()
	rng := rand.New(rand.NewPCG(o.Seed, o.Seed^0x9e3779b97f4a7c15))
	rep := CrashReport{Pending: len(m.pending), Torn: -1}
	tear := -1
	if o.Tear && len(m.pending) > 0 {
		tear = rng.IntN(len(m.pending))
	}
	for i, w := range m.pending {
		if i == tear {
			rep.Torn = i
			for s := 0; s*SectorSize < len(w.data); s++ {
				if rng.IntN(2) == 0 {
					continue
				}
				lo := s * SectorSize
				hi := min(lo+SectorSize, len(w.data))
				copy(m.durable[w.off+int64(lo):], w.data[lo:hi])
				rep.TornAt = append(rep.TornAt, s)
			}
			continue
		}
		keep := false
		switch o.Mode {
		case KeepAll:
			keep = true
		case KeepRandom:
			keep = rng.IntN(2) == 0
		}
		if keep {
			copy(m.durable[w.off:], w.data)
			rep.Kept++
		}
	}
	m.pending = m.pending[:0]
	copy(m.cur, m.durable)
	return rep
}
