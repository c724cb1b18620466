package logwrites

import (
	"bytes"
	"encoding/binary"
	"errors"
	"runtime"
	"testing"

	"github.com/dmlog/dmlog/dirtylog/testdev"
)

func fuzzSeeds(f *testing.F) {
	f.Add(sampleLog(512).bytes(-1))
	f.Add(sampleLog(4096).bytes(-1))
	f.Add(sampleLog(512).bytes(20))
	f.Add(newHandLog(512).bytes(-1))
	h := newHandLog(512)
	f.Add(h.raw(h.header(0, 0, FlagMark|FlagFUA, 3, "abc")).bytes(-1))
	f.Add(newHandLog(512).discard(1<<40, 1<<40).bytes(-1))
	f.Add(newHandLog(512).write(0, 0, fill(512, 1)).bytes(1 << 40))
	// Entries large enough to be staged (contiguous: one run), whole and
	// truncated.
	big := newHandLog(512).write(0, 0, fill(32<<10, 1)).write(64, FlagFUA, fill(32<<10, 2)).bytes(-1)
	f.Add(big)
	f.Add(big[:len(big)-100])
}

// checkLogErr fails on errors that do not wrap one of the package's sentinels.
func checkLogErr(t *testing.T, err error) {
	t.Helper()
	for _, s := range []error{ErrBadMagic, ErrBadVersion, ErrBadSectorSize, ErrMalformed, ErrTruncated, ErrMarkNotFound, ErrNotFound, ErrInvalidEntry, testdev.ErrOutOfRange} {
		if errors.Is(err, s) {
			return
		}
	}
	t.Fatalf("error wraps no sentinel: %v", err)
}

// The rule for a log from outside: no allocation beyond the log's
// size. The fuzz targets check it on every input: what the operation under
// test allocates (runtime.MemStats.TotalAlloc, which counts every byte
// allocated, freed or not) is at most allocPerByte bytes per byte of the log
// plus allocSlack. The factor covers several buffers each bounded by the
// log: Replay's read-ahead window (at most the log's size), staging buffer
// (at most about twice it), buffer of zeros (at most the window), and the
// iterator's header buffer and mark names, allocated again by each pass
// (Replay makes up to three: start mark, end mark, replay); FuzzOpen's
// ReadData buffers (in all, at most the log's size). The slack covers the
// smallest buffers (4 KiB window and zeros for a tiny log), errors and
// closures.
const (
	allocPerByte = 8
	allocSlack   = 32 << 10
)

// checkAlloc runs f and fails if it allocates more than the bound for a
// log of n bytes.
func checkAlloc(t *testing.T, what string, n int, f func()) {
	t.Helper()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	if d, limit := after.TotalAlloc-before.TotalAlloc, uint64(allocPerByte*n+allocSlack); d > limit {
		t.Fatalf("%s allocated %d bytes for a log of %d bytes (limit %d)", what, d, n, limit)
	}
}

// FuzzOpen: arbitrary bytes never panic or hang; every entry yielded has
// its data in the log, and the iteration ends within the log's size.
// Opening and reading every entry's data allocates no more than the
// bound of checkAlloc.
func FuzzOpen(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		checkAlloc(t, "Open, Entries and ReadData", len(b), func() { fuzzOpen(t, b) })
	})
}

func fuzzOpen(t *testing.T, b []byte) {
	{
		l, err := Open(bytes.NewReader(b))
		if err != nil {
			checkLogErr(t, err)
			return
		}
		s := l.SectorSize()
		n := 0
		for e, err := range l.Entries() {
			if err != nil {
				checkLogErr(t, err)
				return
			}
			n++
			if int64(e.Block)*int64(s) >= int64(len(b)) {
				t.Fatalf("entry %d at block %d beyond the log", e.Index, e.Block)
			}
			if e.HasData() {
				if int64(e.NextBlock())*int64(s) > int64(len(b)) {
					t.Fatalf("entry %d data beyond the log", e.Index)
				}
				p := make([]byte, e.Length(s))
				if err := l.ReadData(e, p); err != nil {
					t.Fatal(err)
				}
			}
		}
		if uint64(n) != l.NumEntries() {
			t.Fatalf("%d entries read without error, count %d", n, l.NumEntries())
		}
	}
}

// FuzzReplay: replaying arbitrary logs with options taken from the input
// onto a small device, with Replay and with ReplayState, never panics;
// errors wrap sentinels; each allocates no more than the bound of
// checkAlloc (the targets, plain byte slices that do not allocate, are
// made before measuring).
func FuzzReplay(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := Open(bytes.NewReader(b))
		if err != nil {
			return
		}
		var o ReplayOptions
		if len(b) >= 40 {
			sel := binary.LittleEndian.Uint64(b[32:])
			o.StartEntry = sel & 3
			o.Limit = (sel >> 2) & 7
			o.NextFlush = sel&(1<<5) != 0
			o.NextFUA = sel&(1<<6) != 0
			o.NoDiscard = sel&(1<<7) != 0
			o.StartSector = (sel >> 8) & 15
			o.EndSector = (sel >> 12) & 31
			if sel&(1<<17) != 0 {
				o.EndMark = "m1"
			}
			if sel&(1<<18) != 0 {
				o.StartMark = "m1"
			}
			if sel&(1<<19) != 0 {
				o.CheckEvery = 2
				o.Checker = func(e Entry) error { return nil }
			}
			o.Find = sel&(1<<20) != 0
		}
		target, stateTarget := newMemDev(64<<10), newMemDev(64<<10)
		checkAlloc(t, "Replay", len(b), func() { err = Replay(l, target, o) })
		if err != nil {
			checkLogErr(t, err)
		}
		if !o.Find && o.Checker == nil {
			// The last-writer-wins replay leaves what the sequential one
			// does; where the sequential one succeeds, so does it.
			seq := newMemDev(64 << 10)
			so := o
			so.Sequential = true
			serr := Replay(l, seq, so)
			if serr == nil && err != nil {
				t.Fatalf("sequential replay succeeds, last-writer-wins fails: %v", err)
			}
			if serr == nil && !bytes.Equal(seq.b, target.b) {
				t.Fatal("last-writer-wins and sequential replays differ")
			}
		}
		// ReplayState of the same log: a prefix, then the next entries
		// (any kind, any size) in reverse order.
		d := Description{Prefix: min(o.Limit, l.NumEntries())}
		for i := d.Prefix; i < min(d.Prefix+3, l.NumEntries()); i++ {
			d.Apply = append([]uint64{i}, d.Apply...)
		}
		checkAlloc(t, "ReplayState", len(b), func() { err = ReplayState(l, d, stateTarget) })
		if err != nil {
			checkLogErr(t, err)
		}
	})
}

// A tiny log claiming a huge sector size and many entries is rejected
// without allocating buffers of the claimed sizes.
func TestNoGiantAllocation(t *testing.T) {
	img := newHandLog(512).bytes(1 << 40)
	copy(img[24:], le32(MaxSectorSize))
	img = img[:100]
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range 10 {
		l, err := Open(bytes.NewReader(img))
		if err != nil {
			t.Fatal(err)
		}
		for _, err := range l.Entries() {
			if !errors.Is(err, ErrTruncated) {
				t.Fatalf("want ErrTruncated, got %v", err)
			}
		}
		if err := Replay(l, testdev.NewMemory(4096), ReplayOptions{}); !errors.Is(err, ErrTruncated) {
			t.Fatalf("want ErrTruncated, got %v", err)
		}
	}
	runtime.ReadMemStats(&after)
	if d := after.TotalAlloc - before.TotalAlloc; d > 10*(64<<10) {
		t.Fatalf("allocated %d bytes for 10 opens of a 100-byte log", d)
	}
}
