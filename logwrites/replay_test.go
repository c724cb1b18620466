package logwrites

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"

	"github.com/dmlog/dmlog/dirtylog/testdev"
	"github.com/stretchr/testify/require"
)

func newMem(n int64) *testdev.Memory { return testdev.NewMemory(n) }

// sampleLog is the reference's cross-check log: write, write, FLUSH, MARK
// m1, FUA|METADATA write, DISCARD, write, MARK dm-log-writes-end.
func sampleLog(s int) *handLog {
	return newHandLog(s).
		write(0, 0, fill(s, 'a')).
		write(2, 0, fill(2*s, 'b')).
		flush(FlagFlush).
		mark("m1").
		write(4, FlagFUA|FlagMetadata, fill(2*s, 'c')).
		discard(2, 1).
		write(6, 0, fill(s, 'd')).
		mark(EndMark)
}

func replayBytes(t *testing.T, l *Log, o ReplayOptions) []byte {
	t.Helper()
	target := newMem(16 * int64(l.SectorSize()))
	require.NoError(t, Replay(l, target, o))
	return target.Bytes()
}

// expected image after applying entries [from, to) of sampleLog by hand.
func sampleImage(s, from, to int) []byte {
	img := make([]byte, 16*s)
	apply := []func(){
		func() { copy(img[0:], fill(s, 'a')) },
		func() { copy(img[2*s:], fill(2*s, 'b')) },
		func() {}, func() {},
		func() { copy(img[4*s:], fill(2*s, 'c')) },
		func() { copy(img[2*s:], make([]byte, s)) },
		func() { copy(img[6*s:], fill(s, 'd')) },
		func() {},
	}
	for i := from; i < to; i++ {
		apply[i]()
	}
	return img
}

func TestFindCrossCheck(t *testing.T) {
	// Results confirmed with the C replay-log (reference §3.6).
	for _, s := range []int{512, 4096} {
		l := openBytes(t, sampleLog(s).bytes(-1))
		e, err := Find(l, ReplayOptions{EndMark: "m1"})
		require.NoError(t, err)
		require.Equal(t, "3@8", fmt.Sprintf("%d@%d", e.Index, e.NextBlock()))
		e, err = Find(l, ReplayOptions{NextFUA: true})
		require.NoError(t, err)
		require.Equal(t, "4@11", fmt.Sprintf("%d@%d", e.Index, e.NextBlock()))
		e, err = Find(l, ReplayOptions{Limit: 3})
		require.NoError(t, err)
		require.Equal(t, uint64(2), e.Index)
		_, err = Find(l, ReplayOptions{EndMark: "nope"})
		require.ErrorIs(t, err, ErrNotFound)
		_, err = Find(l, ReplayOptions{})
		require.ErrorIs(t, err, ErrNotFound)
	}
}

// Test idea 15: replay to a mark, then from it; the halves equal a full replay.
func TestReplayMarks(t *testing.T) {
	for _, s := range []int{512, 4096} {
		l := openBytes(t, sampleLog(s).bytes(-1))
		require.Equal(t, sampleImage(s, 0, 8), replayBytes(t, l, ReplayOptions{}))
		require.Equal(t, sampleImage(s, 0, 4), replayBytes(t, l, ReplayOptions{EndMark: "m1"}))
		require.Equal(t, sampleImage(s, 4, 8), replayBytes(t, l, ReplayOptions{StartMark: "m1"}))
		target := newMem(16 * int64(s))
		require.NoError(t, Replay(l, target, ReplayOptions{EndMark: "m1"}))
		require.NoError(t, Replay(l, target, ReplayOptions{StartMark: "m1"}))
		require.Equal(t, sampleImage(s, 0, 8), target.Bytes())
	}
}

// Test idea 16: a missing end or start mark is an error and nothing is written.
func TestMissingMarks(t *testing.T) {
	l := openBytes(t, sampleLog(512).bytes(-1))
	target := newMem(8192)
	require.ErrorIs(t, Replay(l, target, ReplayOptions{EndMark: "m10"}), ErrMarkNotFound)
	require.ErrorIs(t, Replay(l, target, ReplayOptions{EndMark: "m"}), ErrMarkNotFound)
	require.ErrorIs(t, Replay(l, target, ReplayOptions{StartMark: "zz"}), ErrMarkNotFound)
	// An end mark before the start point does not count.
	require.ErrorIs(t, Replay(l, target, ReplayOptions{StartMark: EndMark, EndMark: "m1"}), ErrMarkNotFound)
	require.Equal(t, make([]byte, 8192), target.Bytes())
	require.Zero(t, target.Stats().Writes)
}

// Test idea 17: limit, start entry, next FLUSH/FUA, empty log.
func TestReplayStops(t *testing.T) {
	s := 512
	l := openBytes(t, sampleLog(s).bytes(-1))
	require.Equal(t, sampleImage(s, 0, 2), replayBytes(t, l, ReplayOptions{Limit: 2}))
	require.Equal(t, sampleImage(s, 1, 3), replayBytes(t, l, ReplayOptions{StartEntry: 1, Limit: 2}))
	require.Equal(t, sampleImage(s, 0, 3), replayBytes(t, l, ReplayOptions{NextFlush: true}))
	require.Equal(t, sampleImage(s, 0, 5), replayBytes(t, l, ReplayOptions{NextFUA: true}))
	require.Equal(t, sampleImage(s, 5, 8), replayBytes(t, l, ReplayOptions{StartEntry: 5}))
	require.Equal(t, sampleImage(s, 4, 5), replayBytes(t, l, ReplayOptions{StartMark: "m1", NextFUA: true}))
	require.ErrorIs(t, Replay(l, newMem(8192), ReplayOptions{StartEntry: 8}), ErrInvalidEntry)
	err := Replay(l, nil, ReplayOptions{})
	require.ErrorIs(t, err, ErrNoTarget)
	require.NotErrorIs(t, err, ErrInvalidEntry)
	require.Contains(t, err.Error(), "nil target")

	empty := openBytes(t, newHandLog(512).bytes(-1))
	require.Equal(t, uint64(0), empty.NumEntries())
	target := newMem(4096)
	require.NoError(t, Replay(empty, target, ReplayOptions{}))
	require.Equal(t, make([]byte, 4096), target.Bytes())
}

// Test idea 18: an overstated count applies what is there, then fails saying
// how many entries were applied.
func TestReplayOverstatedCount(t *testing.T) {
	l := openBytes(t, sampleLog(512).bytes(11))
	target := newMem(8192)
	err := Replay(l, target, ReplayOptions{})
	require.ErrorIs(t, err, ErrTruncated)
	var re *ReplayError
	require.True(t, errors.As(err, &re))
	require.Equal(t, uint64(8), re.Applied)
	require.Equal(t, uint64(8), re.Entry.Index)
	require.Contains(t, err.Error(), "after applying 8 entries")
	require.Equal(t, sampleImage(512, 0, 8), target.Bytes())
	// A lagging count replays only what it covers.
	require.Equal(t, sampleImage(512, 0, 3), replayBytes(t, openBytes(t, sampleLog(512).bytes(3)), ReplayOptions{}))
}

// zeroCounter is a target that checks that everything written is zero and
// counts it, without storing anything. It takes parallel writes, as an
// io.WriterAt may be given.
type zeroCounter struct {
	mu         sync.Mutex
	n, nonzero int64
	largest    int // the largest write
}

var zeroChunk = make([]byte, 1<<20)

func (z *zeroCounter) WriteAt(p []byte, off int64) (int, error) {
	z.mu.Lock()
	defer z.mu.Unlock()
	for q := p; len(q) > 0; {
		n := min(len(q), len(zeroChunk))
		if !bytes.Equal(q[:n], zeroChunk[:n]) {
			z.nonzero++
		}
		q = q[n:]
	}
	z.n += int64(len(p))
	z.largest = max(z.largest, len(p))
	return len(p), nil
}

// The buffer of zeros for discards is sized by the discards and by the
// log: a tiny log with a small discard, or with a discard of a whole large
// device, allocates a few KiB (not replayChunk), and still zeroes the whole
// range, in chunks no larger than the log's read-ahead window; a log of
// 1 MiB or more zeroes in chunks of replayChunk (sequential) or lwwJobSize
// (last-writer-wins). Replay and ReplayState alike.
func TestReplayDiscardBuffer(t *testing.T) {
	small := newHandLog(512).discard(8, 8).bytes(-1)
	huge := newHandLog(512).discard(0, 300<<20/512).bytes(-1)
	for _, tc := range []struct {
		name string
		run  func(l *Log, w io.WriterAt) error
	}{
		{"Replay", func(l *Log, w io.WriterAt) error { return Replay(l, w, ReplayOptions{}) }},
		{"Replay/sequential", func(l *Log, w io.WriterAt) error { return Replay(l, w, ReplayOptions{Sequential: true}) }},
		{"ReplayState", func(l *Log, w io.WriterAt) error { return ReplayState(l, Description{Prefix: l.NumEntries()}, w) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := openBytes(t, small)
			target := newMemDev(64 << 10)
			copy(target.b[4096:8192], fill(4096, 1))
			require.Less(t, allocated(func() { require.NoError(t, tc.run(l, target)) }), uint64(32<<10))
			require.Equal(t, make([]byte, 64<<10), target.b)

			l = openBytes(t, huge)
			var z zeroCounter
			require.Less(t, allocated(func() { require.NoError(t, tc.run(l, &z)) }), uint64(64<<10))
			require.Equal(t, int64(300<<20), z.n)
			require.Zero(t, z.nonzero)
			require.Equal(t, 4096, z.largest)

			// A log of 1 MiB or more: chunks of replayChunk.
			h := newHandLog(512).write(0, 0, fill(1<<20, 1)).discard(0, 3<<20/512)
			l = h.open(t)
			z = zeroCounter{}
			require.NoError(t, tc.run(l, &z))
			if tc.name != "Replay/sequential" {
				// Last writer wins: the write is all discarded later, and
				// zeros go out in jobs of lwwJobSize.
				require.Equal(t, int64(3<<20), z.n)
				require.Zero(t, z.nonzero)
				require.Equal(t, lwwJobSize, z.largest)
			} else {
				require.Equal(t, int64(4<<20), z.n)
				require.Equal(t, int64(1), z.nonzero) // the write
				require.Equal(t, replayChunk, z.largest)
			}
		})
	}
}

// Test idea 20: discards zero the range whatever the size; no-discard; the
// sector range filters discards too.
func TestReplayDiscards(t *testing.T) {
	big := uint64(300 << 20 / 512) // 300 MiB, beyond replay-log's 128 MiB cut-off
	l := openBytes(t, newHandLog(512).discard(0, big).bytes(-1))
	var z zeroCounter
	require.NoError(t, Replay(l, &z, ReplayOptions{}))
	require.Equal(t, int64(300<<20), z.n)
	require.Zero(t, z.nonzero)

	s := 512
	l = openBytes(t, sampleLog(s).bytes(-1))
	want := sampleImage(s, 0, 5)
	copy(want[6*s:], fill(s, 'd'))
	require.Equal(t, want, replayBytes(t, l, ReplayOptions{NoDiscard: true}))
	// Sector range [3, 11): write at 0 skipped, write at 2..3 overlaps,
	// the discard at 2 does not overlap and is skipped.
	want = sampleImage(s, 1, 5)
	copy(want[6*s:], fill(s, 'd'))
	var acts []Action
	require.Equal(t, want, replayBytes(t, l, ReplayOptions{StartSector: 3, EndSector: 11, Progress: func(e Entry, a Action) { acts = append(acts, a) }}))
	require.Equal(t, []Action{Skipped, Replayed, Replayed, Replayed, Replayed, Skipped, Replayed, Replayed}, acts)
	// Range [0, 2): only the write at 0, and the discard at 2 is out.
	require.Equal(t, sampleImage(s, 0, 1), replayBytes(t, l, ReplayOptions{EndSector: 2}))
}

// syncCounter records whether the target was synced before each check.
type syncCounter struct {
	*testdev.Memory
}

// Test idea 21: the checker runs with the target synced, every N entries or
// at FLUSH/FUA/DISCARD; errors and panics stop the replay and name the entry.
func TestChecker(t *testing.T) {
	s := 512
	l := openBytes(t, sampleLog(s).bytes(-1))
	run := func(o ReplayOptions) ([]uint64, error) {
		target := newMem(8192)
		var at []uint64
		check := o.Checker
		o.Checker = func(e Entry) error {
			require.Zero(t, target.Pending(), "target synced before the check")
			require.Equal(t, sampleImage(s, 0, int(e.Index)+1), target.Bytes())
			at = append(at, e.Index)
			if check != nil {
				return check(e)
			}
			return nil
		}
		return at, Replay(l, target, o)
	}
	at, err := run(ReplayOptions{CheckEvery: 3})
	require.NoError(t, err)
	require.Equal(t, []uint64{2, 5}, at)
	at, err = run(ReplayOptions{CheckOn: FlagFlush})
	require.NoError(t, err)
	require.Equal(t, []uint64{2}, at)
	at, err = run(ReplayOptions{CheckOn: FlagFUA | FlagDiscard})
	require.NoError(t, err)
	require.Equal(t, []uint64{4, 5}, at)

	at, err = run(ReplayOptions{CheckEvery: 1, Checker: func(e Entry) error {
		if e.Index == 4 {
			return io.ErrUnexpectedEOF
		}
		return nil
	}})
	require.ErrorIs(t, err, ErrCheck)
	require.ErrorIs(t, err, io.ErrUnexpectedEOF)
	var re *ReplayError
	require.True(t, errors.As(err, &re))
	require.Equal(t, uint64(4), re.Entry.Index)
	require.Equal(t, []uint64{0, 1, 2, 3, 4}, at)

	_, err = run(ReplayOptions{CheckOn: FlagDiscard, Checker: func(e Entry) error { panic("boom") }})
	require.ErrorIs(t, err, ErrCheck)
	require.True(t, errors.As(err, &re))
	require.Equal(t, uint64(5), re.Entry.Index)
	require.Contains(t, err.Error(), "boom")

	require.ErrorIs(t, Replay(l, newMem(8192), ReplayOptions{Checker: func(Entry) error { return nil }}), ErrInvalidArgument, "a Checker with nothing to check on is a bad option, not a bad entry")
	require.ErrorIs(t, Replay(l, newMem(8192), ReplayOptions{CheckEvery: 2}), ErrInvalidArgument)
}

// A failing target stops the replay with the entry and the applied count.
func TestReplayTargetError(t *testing.T) {
	l := openBytes(t, sampleLog(512).bytes(-1))
	f := testdev.NewFaulty(newMem(8192))
	f.Add(testdev.Rule{Op: testdev.OpWrite, Nth: 3})
	err := Replay(l, f, ReplayOptions{Sequential: true})
	require.ErrorIs(t, err, testdev.ErrInjected)
	var re *ReplayError
	require.True(t, errors.As(err, &re))
	require.Equal(t, uint64(4), re.Entry.Index)
	require.Equal(t, uint64(4), re.Applied)
}

// Test idea 22: every prefix ending at a flush, replayed from the initial
// image, matches an independent model of the device, also when replayed
// onto fresh targets in any order.
func TestReplayEveryPrefix(t *testing.T) {
	rec, _, logDev := newRec(t, Options{})
	model := make([]byte, 1<<20)
	var snapshots [][]byte // flushed model state after each Sync
	for i := range 30 {
		off := int64(i%7) * 4096
		p := fill(4096, byte(i+1))
		_, err := rec.WriteAt(p, off)
		require.NoError(t, err)
		copy(model[off:], p)
		if i%5 == 4 {
			require.NoError(t, rec.Sync())
			snapshots = append(snapshots, append([]byte(nil), model...))
		}
	}
	require.NoError(t, rec.Close())
	l := openBytes(t, logDev.Bytes())
	for k := len(snapshots) - 1; k >= 0; k-- {
		// Entry index of the k-th flush.
		var n uint64
		seen := 0
		for e, err := range l.Entries() {
			require.NoError(t, err)
			if e.Flags&FlagFlush != 0 {
				if seen == k {
					n = e.Index + 1
					break
				}
				seen++
			}
		}
		target := newMem(1 << 20)
		require.NoError(t, Replay(l, target, ReplayOptions{Limit: n}))
		require.Equal(t, snapshots[k], target.Bytes(), "prefix at flush %d", k)
	}
}

func TestActionString(t *testing.T) {
	require.Equal(t, "seek replay skip found Action(9)", fmt.Sprint(Seeked, " ", Replayed, " ", Skipped, " ", Found, " ", Action(9)))
}

// Test idea 22: target hygiene. Replay does not undo what a target holds,
// so a prefix replayed onto a target that held a longer prefix keeps the
// later writes (the "data from the future" of generic/482); resetting the
// target to the base image first gives exactly the prefix. A checker that
// must change what it checks (a mount running journal recovery) works on a
// snapshot of the synced target, and the replay is unaffected.
func TestTargetHygiene(t *testing.T) {
	const s = 512
	l := openBytes(t, sampleLog(s).bytes(-1))
	base := make([]byte, 16*s)
	target := testdev.NewMemoryFrom(base)
	require.NoError(t, Replay(l, target, ReplayOptions{}))
	require.NoError(t, Replay(l, target, ReplayOptions{Limit: 2}))
	require.NotEqual(t, sampleImage(s, 0, 2), target.Bytes(), "a dirty target keeps later writes")
	_, err := target.WriteAt(base, 0) // reset to the base image
	require.NoError(t, err)
	require.NoError(t, Replay(l, target, ReplayOptions{Limit: 2}))
	require.Equal(t, sampleImage(s, 0, 2), target.Bytes())

	target = testdev.NewMemoryFrom(base)
	var checked int
	require.NoError(t, Replay(l, target, ReplayOptions{CheckEvery: 1, Checker: func(e Entry) error {
		snap := testdev.NewMemoryFrom(target.Bytes())
		require.Equal(t, sampleImage(s, 0, int(e.Index)+1), snap.Bytes(), "entry %d", e.Index)
		_, err := snap.WriteAt(fill(16*s, 0xee), 0) // "recovery" scribbles on the snapshot
		checked++
		return err
	}}))
	require.Equal(t, 8, checked)
	require.Equal(t, sampleImage(s, 0, 8), target.Bytes())
}

// Replay reads the log through its read-ahead window once: an entry whose
// data straddles the end of the window is written from what is resident,
// not re-read from its start. Bytes read stay within the log's size plus
// one window of read-ahead past its end.
func TestReplayReadsLogOnce(t *testing.T) {
	const dev = 4 << 20
	logDev := testdev.NewMemory(16 << 20)
	rec, err := New(testdev.NewMemory(dev), logDev, Options{})
	require.NoError(t, err)
	// 768 KiB writes: re-reading from the start of each entry's data
	// would read about a third of the log twice.
	p := fill(768<<10, 7)
	for i := range 16 {
		_, err := rec.WriteAt(p, int64(i%4*len(p)))
		require.NoError(t, err)
		if i%4 == 3 {
			require.NoError(t, rec.Sync())
		}
	}
	require.NoError(t, rec.Close())
	l, err := Open(logDev)
	require.NoError(t, err)
	var logBytes int64
	for e, err := range l.Entries() {
		require.NoError(t, err)
		logBytes = int64(e.NextBlock()) * 512
	}
	logDev.ResetStats()
	target := testdev.NewMemory(dev)
	require.NoError(t, Replay(l, target, ReplayOptions{}))
	require.LessOrEqual(t, logDev.Stats().BytesRead, logBytes+replayChunk+int64(l.NumEntries()))
	require.Equal(t, dev, len(target.Bytes()))
	require.Equal(t, p, target.Bytes()[:len(p)])
}
