package logwrites

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"testing"

	"github.com/dmlog/dmlog/dirtylog/testdev"
	"github.com/stretchr/testify/require"
)

// stageLog builds a log mixing what the staged path must handle: runs of
// large writes to contiguous ranges (coalesced), a mark and an empty flush
// inside a run, a discard and an overlapping rewrite after it, small writes
// (through the window), a write larger than a staging run (streamed), and
// large writes to ranges that are not contiguous. Devices are devSize bytes.
// Offsets and sizes are rounded up to whole sectors.
func stageLog(s int) (*handLog, int) {
	const devSize = 8 << 20
	h := newHandLog(s)
	sec := func(b int) uint64 { return uint64((b + s - 1) / s) }
	c := byte(1)
	big := func(off, n int) {
		h.write(sec(off), 0, fill(int(sec(n))*s, c))
		c++
	}
	for i := range 20 { // 20 × 64 KiB, contiguous: more than one run
		big(i*64<<10, 64<<10)
		if i == 5 {
			h.mark("in-run")
		}
		if i == 9 {
			h.flush(FlagFlush)
		}
	}
	// A discard inside the pending run (entries 16-19), then a write over
	// part of it.
	h.discard(sec(1<<20+100<<10), sec(64<<10))
	big(1<<20+128<<10, 96<<10)
	for i := range 8 { // small writes
		h.write(sec(2<<20+i*s), 0, fill(s, c))
		c++
	}
	big(3<<20, 3<<20/2) // larger than a run: streamed through the window
	for _, off := range []int{6 << 20, 5 << 20, 6<<20 + 32<<10, 7 << 20} {
		big(off, 40<<10) // not contiguous, and overlapping
	}
	big(7<<20+40<<10, 48<<10) // continues the last one
	h.write(sec(7<<20+40<<10), FlagFUA, fill(s, 0xee))
	return h, devSize
}

// modelReplay applies the entries of l selected by the sector range and
// NoDiscard, one at a time with ReadData, independently of Replay's reads.
func modelReplay(t *testing.T, l *Log, dev int, o ReplayOptions, upto uint64) []byte {
	t.Helper()
	s := l.SectorSize()
	img := make([]byte, dev)
	for e, err := range l.Entries() {
		require.NoError(t, err)
		if e.Index > upto {
			break
		}
		if e.NrSectors == 0 {
			continue
		}
		if e.Sector+e.NrSectors <= o.StartSector || (o.EndSector != 0 && e.Sector >= o.EndSector) {
			continue
		}
		if e.Flags&FlagDiscard != 0 && o.NoDiscard {
			continue
		}
		p := make([]byte, e.Length(s))
		require.NoError(t, l.ReadData(e, p))
		copy(img[e.Offset(s):], p)
	}
	return img
}

// Replay with staged reads and coalesced runs leaves the target exactly as
// applying each entry in order does, with every option that changes what is
// written or when the target is observed; a checker and Progress see the
// target with every entry before theirs applied.
func TestReplayStagedMatchesModel(t *testing.T) {
	for _, s := range []int{512, 4096, 128 << 10} {
		h, dev := stageLog(s)
		l := h.open(t)
		n := l.NumEntries()
		sec := func(b int) uint64 { return uint64(b / s) }
		opts := map[string]ReplayOptions{
			"all":       {},
			"nodiscard": {NoDiscard: true},
			"sectors":   {StartSector: sec(160 << 10), EndSector: sec(5<<20 + 4096)},
			"limit":     {Limit: 17},
		}
		for name, o := range opts {
			t.Run(fmt.Sprintf("%d/%s", s, name), func(t *testing.T) {
				target := newMemDev(dev)
				require.NoError(t, Replay(l, target, o))
				upto := n - 1
				if o.Limit != 0 {
					upto = o.Limit - 1
				}
				require.True(t, bytes.Equal(modelReplay(t, l, dev, o, upto), target.b))

				// A checker after every entry, or Progress, sees the
				// target with the entry and all before it applied.
				for _, progress := range []bool{false, true} {
					target = newMemDev(dev)
					seen := 0
					oc := o
					if progress {
						oc.Progress = func(e Entry, a Action) {
							seen++
							if e.Index%7 == 0 && !bytes.Equal(modelReplay(t, l, dev, o, e.Index), target.b) {
								t.Errorf("Progress: target differs from the model after entry %d", e.Index)
							}
						}
					} else {
						oc.CheckEvery = 1
						oc.Checker = func(e Entry) error {
							seen++
							if !bytes.Equal(modelReplay(t, l, dev, o, e.Index), target.b) {
								return fmt.Errorf("target differs from the model after entry %d", e.Index)
							}
							return nil
						}
					}
					require.NoError(t, Replay(l, target, oc))
					require.Equal(t, int(upto+1), seen)
					require.True(t, bytes.Equal(modelReplay(t, l, dev, o, upto), target.b))
				}
			})
		}
	}
}

// A target write failing inside a coalesced run names the entry whose range
// fails, with the entries before it applied and counted, as when each entry
// is written on its own (Progress set); a failing write changes nothing.
func TestReplayStagedTargetError(t *testing.T) {
	h := newHandLog(512)
	for i := range 12 {
		h.write(uint64(i*128), 0, fill(64<<10, byte(i+1)))
	}
	l := h.open(t)
	for _, progress := range []bool{false, true} {
		mem := newMemDev(1 << 20)
		f := testdev.NewFaulty(mem)
		f.Add(testdev.Rule{Op: testdev.OpWrite, Off: 7*64<<10 + 100, Len: 1})
		o := ReplayOptions{Sequential: true}
		if progress {
			o.Progress = func(Entry, Action) {}
		}
		err := Replay(l, f, o)
		require.ErrorIs(t, err, testdev.ErrInjected)
		var re *ReplayError
		require.True(t, errors.As(err, &re))
		require.Equal(t, uint64(7), re.Entry.Index, "progress %v", progress)
		require.Equal(t, uint64(7), re.Applied)
		want := make([]byte, 1<<20)
		for i := range 7 {
			copy(want[i*64<<10:], fill(64<<10, byte(i+1)))
		}
		require.True(t, bytes.Equal(want, mem.b), "progress %v", progress)
	}
}

// shortWriter writes only the first half of writes longer than 64 KiB
// below 2 MiB (except discards' zeros) and fails them; other writes succeed.
type shortWriter struct{ *memDev }

func (w shortWriter) WriteAt(p []byte, off int64) (int, error) {
	if len(p) > 64<<10 && off < 2<<20 && !allZero(p) {
		n, _ := w.memDev.WriteAt(p[:len(p)/2], off)
		return n, errors.New("short write")
	}
	return w.memDev.WriteAt(p, off)
}

// A run whose write is cut short is finished entry by entry from the first
// byte not written.
func TestReplayStagedShortWrite(t *testing.T) {
	h, dev := stageLog(512)
	l := h.open(t)
	target := shortWriter{newMemDev(dev)}
	require.NoError(t, Replay(l, target, ReplayOptions{Sequential: true}))
	require.True(t, bytes.Equal(modelReplay(t, l, dev, ReplayOptions{Sequential: true}, l.NumEntries()), target.b))
}

// A log truncated inside a staged entry's data, or one whose last entry is
// staged with no header after it, replays what is there, then stops with
// ErrTruncated naming the entry.
func TestReplayStagedTruncated(t *testing.T) {
	h := newHandLog(512)
	for i := range 4 {
		h.write(uint64(i*128), 0, fill(64<<10, byte(i+1)))
	}
	img := h.bytes(-1)
	target := newMemDev(1 << 20)
	require.NoError(t, Replay(openBytes(t, img), target, ReplayOptions{}))
	require.Equal(t, fill(64<<10, 4), target.b[3*64<<10:4*64<<10])

	l := openBytes(t, img[:len(img)-1000])
	target = newMemDev(1 << 20)
	err := Replay(l, target, ReplayOptions{})
	require.ErrorIs(t, err, ErrTruncated)
	var re *ReplayError
	require.True(t, errors.As(err, &re))
	require.Equal(t, uint64(3), re.Entry.Index)
	require.Equal(t, uint64(3), re.Applied)
	require.Equal(t, fill(64<<10, 3), target.b[2*64<<10:3*64<<10])
	require.Equal(t, make([]byte, 64<<10), target.b[3*64<<10:4*64<<10])
}

// Replay's buffers are bounded whatever the entries' sizes: replaying a
// log of large entries and a discard allocates about one window, one
// staging buffer and one buffer of zeros, and a small log of large entries
// less.
func TestReplayStagedBoundedAllocation(t *testing.T) {
	measure := func(l *Log, dev int) uint64 {
		var before, after runtime.MemStats
		target := newMemDev(dev)
		runtime.GC()
		runtime.ReadMemStats(&before)
		require.NoError(t, Replay(l, target, ReplayOptions{Sequential: true}))
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc
	}
	h, dev := stageLog(512)
	require.Less(t, measure(h.open(t), dev), uint64(2*replayChunk+stageSize+(256<<10)))
	h = newHandLog(512)
	for i := range 3 {
		h.write(uint64(i*80), 0, fill(40<<10, byte(i+1)))
	}
	require.Less(t, measure(h.open(t), 1<<20), uint64(512<<10))
}

// Contiguous large entries reach the target as runs of up to replayChunk
// bytes (one write per run), and each is read from the log with one read
// that also brings the next header (plus the iterator's one-byte probe of
// the data's end): about two log reads per entry.
func TestReplayStagedCoalesces(t *testing.T) {
	h := newHandLog(512)
	for i := range 32 {
		h.write(uint64(i*128), 0, fill(64<<10, byte(i+1)))
	}
	logDev := testdev.NewMemoryFrom(h.bytes(-1))
	l, err := Open(logDev)
	require.NoError(t, err)
	logDev.ResetStats()
	target := testdev.NewMemory(2 << 20)
	require.NoError(t, Replay(l, target, ReplayOptions{Sequential: true}))
	require.Equal(t, int64(2), target.Stats().Writes)
	require.LessOrEqual(t, logDev.Stats().Reads, int64(2*32+4))
	for i := range 32 {
		require.Equal(t, fill(64<<10, byte(i+1)), target.Bytes()[i*64<<10:(i+1)*64<<10])
	}
}
