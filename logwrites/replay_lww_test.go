package logwrites

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"

	"github.com/dmlog/dmlog/dirtylog/testdev"
	"github.com/stretchr/testify/require"
)

var markNames = []string{"a", "b", "c"}

// randomBytes fills b from rng, eight bytes per draw.
func randomBytes(rng *rand.Rand, b []byte) {
	for i := 0; i < len(b); i += 8 {
		v := rng.Uint64()
		for k := i; k < min(i+8, len(b)); k++ {
			b[k] = byte(v)
			v >>= 8
		}
	}
}

// randomLog builds a random log over a device of devSectors sectors:
// writes (plain, FLUSH, FUA, METADATA), discards, empty flushes and marks
// (names repeat), sometimes with an overstated count, a truncated end or a
// malformed entry.
func randomLog(rng *rand.Rand, s int, devSectors uint64) []byte {
	h := newHandLog(s)
	n := 1 + rng.IntN(40)
	for range n {
		sector := rng.Uint64N(devSectors)
		nr := 1 + rng.Uint64N(min(devSectors-sector, 1+rng.Uint64N(16)))
		switch k := rng.IntN(20); {
		case k < 10:
			var f Flags
			switch rng.IntN(6) {
			case 0:
				f = FlagFlush
			case 1:
				f = FlagFUA
			case 2:
				f = FlagMetadata
			}
			data := make([]byte, int(nr)*s)
			randomBytes(rng, data)
			h.write(sector, f, data)
		case k < 13:
			h.discard(sector, nr)
		case k < 15:
			h.flush([]Flags{FlagFlush, FlagFUA, FlagFlush | FlagFUA}[rng.IntN(3)])
		default:
			h.mark(markNames[rng.IntN(len(markNames))])
		}
	}
	switch rng.IntN(10) {
	case 0: // an overstated count
		return h.bytes(int(h.n) + 1 + rng.IntN(3))
	case 1: // cut short
		b := h.bytes(-1)
		return b[:s+rng.IntN(len(b)-s)]
	case 2: // a malformed entry in the middle (junk after a header)
		h.raw(h.header(0, 1, 0, 0, "junk"))
		for range rng.IntN(4) {
			h.discard(rng.Uint64N(devSectors), 1)
		}
	}
	return h.bytes(-1)
}

// randomOptions picks replay options: start entry or mark, end mark,
// limit, next flush/FUA, no-discard, a sector range, names that may be
// missing.
func randomOptions(rng *rand.Rand, n, devSectors uint64) ReplayOptions {
	var o ReplayOptions
	name := func() string {
		if rng.IntN(6) == 0 {
			return "missing"
		}
		return markNames[rng.IntN(len(markNames))]
	}
	switch rng.IntN(4) {
	case 0:
		o.StartEntry = rng.Uint64N(n + 1)
	case 1:
		o.StartMark = name()
	}
	if rng.IntN(3) == 0 {
		o.EndMark = name()
	}
	if rng.IntN(4) == 0 {
		o.Limit = 1 + rng.Uint64N(n+1)
	}
	o.NextFlush = rng.IntN(6) == 0
	o.NextFUA = rng.IntN(6) == 0
	o.NoDiscard = rng.IntN(4) == 0
	if rng.IntN(3) == 0 {
		o.StartSector = rng.Uint64N(devSectors)
		if rng.IntN(2) == 0 {
			o.EndSector = o.StartSector + 1 + rng.Uint64N(devSectors)
		}
	}
	return o
}

// replayBoth replays l onto two copies of base, last-writer-wins and
// sequentially, and fails unless both give the same bytes and the same
// error (message, sentinel, entry and applied count).
func replayBoth(t *testing.T, l *Log, base []byte, o ReplayOptions, what string) {
	t.Helper()
	lww, seq := newMemDev(len(base)), newMemDev(len(base))
	copy(lww.b, base)
	copy(seq.b, base)
	// Plan, on the last-writer-wins path, is told what Progress is told on
	// the sequential one.
	type call struct {
		e Entry
		a Action
	}
	var planned, progressed []call
	o.Sequential = false
	o.Plan = func(e Entry, a Action) { planned = append(planned, call{e, a}) }
	errL := Replay(l, lww, o)
	o.Sequential, o.Plan = true, nil
	o.Progress = func(e Entry, a Action) { progressed = append(progressed, call{e, a}) }
	errS := Replay(l, seq, o)
	o.Progress = nil
	if len(planned) != len(progressed) {
		t.Fatalf("%s, options %+v: Plan told about %d entries, Progress %d", what, o, len(planned), len(progressed))
	}
	for i := range planned {
		if planned[i] != progressed[i] {
			t.Fatalf("%s, options %+v: call %d: Plan %+v, Progress %+v", what, o, i, planned[i], progressed[i])
		}
	}
	if (errL == nil) != (errS == nil) || (errL != nil && errL.Error() != errS.Error()) {
		t.Fatalf("%s, options %+v: last-writer-wins error %v, sequential %v", what, o, errL, errS)
	}
	var reL, reS *ReplayError
	if errors.As(errL, &reL) != errors.As(errS, &reS) || (reL != nil && (reL.Entry != reS.Entry || reL.Applied != reS.Applied)) {
		t.Fatalf("%s, options %+v: ReplayErrors differ: %+v vs %+v", what, o, reL, reS)
	}
	for _, sentinel := range []error{ErrTruncated, ErrMalformed, ErrMarkNotFound, ErrInvalidEntry} {
		if errors.Is(errL, sentinel) != errors.Is(errS, sentinel) {
			t.Fatalf("%s, options %+v: errors.Is(%v) differs", what, o, sentinel)
		}
	}
	if !bytes.Equal(lww.b, seq.b) {
		i := 0
		for lww.b[i] == seq.b[i] {
			i++
		}
		t.Fatalf("%s, options %+v: targets differ from byte %d", what, o, i)
	}
}

// Property: on thousands of random logs (valid, overstated, cut short,
// malformed) and random options, the last-writer-wins replay leaves the
// target exactly as the sequential replay does and fails the same way.
// DMLOG_SEED changes the seed, DMLOG_LWW_LOGS the number of logs.
func TestReplayLWWMatchesSequential(t *testing.T) {
	seed := testSeed(t)
	logs := 3000
	if raceEnabled {
		logs = 600
	}
	if v := os.Getenv("DMLOG_LWW_LOGS"); v != "" {
		n, err := strconv.Atoi(v)
		require.NoError(t, err, "DMLOG_LWW_LOGS")
		logs = n
	}
	rng := rand.New(rand.NewPCG(seed, 14))
	for i := range logs {
		s := []int{512, 512, 4096}[rng.IntN(3)]
		devSectors := uint64(8 + rng.IntN(64))
		img := randomLog(rng, s, devSectors)
		l, err := Open(bytes.NewReader(img))
		require.NoError(t, err)
		base := make([]byte, int(devSectors)*s)
		randomBytes(rng, base)
		what := fmt.Sprintf("log %d (seed %d)", i, seed)
		replayBoth(t, l, base, ReplayOptions{}, what)
		for range 3 {
			replayBoth(t, l, base, randomOptions(rng, max(l.NumEntries(), 1), devSectors), what)
		}
	}
}

// Both paths agree on the kernel-written log, for every start and end
// point and option the fixture has.
func TestReplayLWWKernelLog(t *testing.T) {
	logImg, _, m := loadKernel(t)
	l := openBytes(t, logImg)
	base := make([]byte, m.DataDevice.Size)
	for i := range base {
		base[i] = byte(i*7 + 3)
	}
	n := l.NumEntries()
	marks := []string{"", "mark1", "mark2", "mark3", EndMark}
	checked := 0
	for _, start := range marks {
		for _, end := range marks {
			for _, nd := range []bool{false, true} {
				o := ReplayOptions{StartMark: start, EndMark: end, NoDiscard: nd}
				replayBoth(t, l, base, o, "kernel log")
				o.StartSector, o.EndSector = 2048, 4096+8
				replayBoth(t, l, base, o, "kernel log")
				checked += 2
			}
		}
	}
	step := uint64(1)
	if raceEnabled {
		step = 4 // the same pairs, thinned: 8 MiB copies are slow under the race detector
	}
	for se := uint64(0); se < n; se += step {
		for lim := uint64(0); lim <= n-se; lim += step {
			replayBoth(t, l, base, ReplayOptions{StartEntry: se, Limit: lim}, "kernel log")
			checked++
		}
	}
	require.Greater(t, checked, 50)
	// And the full replay is the kernel's data device.
	target := testdev.NewMemory(m.DataDevice.Size)
	require.NoError(t, Replay(l, target, ReplayOptions{}))
	require.Equal(t, m.DataDevice.SHA256, sha(target.Bytes()))
}

// The last-writer-wins path reads only the data that survives: a log that
// writes the same range eight times reads about one eighth of its data.
func TestReplayLWWReadsSurvivorsOnly(t *testing.T) {
	h := newHandLog(512)
	const dev = 1 << 20
	for i := range 64 {
		h.write(uint64(i%8*(dev/8/512)), 0, fill(dev/8, byte(i+1)))
	}
	logDev := testdev.NewMemoryFrom(h.bytes(-1))
	l, err := Open(logDev)
	require.NoError(t, err)
	logDev.ResetStats()
	target := testdev.NewMemory(dev)
	require.NoError(t, Replay(l, target, ReplayOptions{}))
	st := logDev.Stats()
	require.LessOrEqual(t, st.BytesRead, int64(dev+64*512+headerReadAhead), "read %d bytes", st.BytesRead)
	for i := range 8 {
		require.Equal(t, fill(dev/8, byte(56+i+1)), target.Bytes()[i*dev/8:(i+1)*dev/8])
	}
	require.LessOrEqual(t, target.Stats().Writes, int64(dev/lwwJobSize), "contiguous writes of lwwJobSize")
}

// A failing target write in the last-writer-wins path names the entry
// whose surviving range failed; writes of other ranges are done.
func TestReplayLWWTargetError(t *testing.T) {
	h := newHandLog(512)
	for i := range 12 {
		h.write(uint64(i*128), 0, fill(64<<10, byte(i+1)))
	}
	h.write(0, 0, fill(64<<10, 0xee)) // entry 12 overwrites entry 0
	l := h.open(t)
	mem := newMemDev(1 << 20)
	f := testdev.NewFaulty(mem)
	f.Add(testdev.Rule{Op: testdev.OpWrite, Off: 7*64<<10 + 100, Len: 1})
	err := Replay(l, f, ReplayOptions{})
	require.ErrorIs(t, err, testdev.ErrInjected)
	var re *ReplayError
	require.True(t, errors.As(err, &re))
	require.Equal(t, uint64(7), re.Entry.Index)
	require.Equal(t, uint64(7*129+1), re.Entry.Block)
	require.Zero(t, re.Applied)
	require.Equal(t, fill(64<<10, 0xee), mem.b[:64<<10])
	require.Equal(t, fill(64<<10, 7), mem.b[6*64<<10:7*64<<10])
}

// The last-writer-wins path's memory is bounded: a few job buffers and a
// map of the surviving extents, whatever the log's size.
func TestReplayLWWBoundedAllocation(t *testing.T) {
	h, dev := stageLog(512)
	l := h.open(t)
	target := newMemDev(dev)
	got := allocated(func() { require.NoError(t, Replay(l, target, ReplayOptions{})) })
	require.Less(t, got, uint64(lwwInFlight*lwwJobSize+(512<<10)))
}
