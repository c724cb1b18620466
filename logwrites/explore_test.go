package logwrites

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dmlog/dmlog/dirtylog/testdev"
	"github.com/stretchr/testify/require"
)

// xcollect explores and returns every state checked, sorted by ID, with
// its image.
type xstate struct {
	d   Description
	img []byte
}

func xexplore(t testing.TB, l *Log, base []byte, o ExploreOptions) ([]xstate, ExploreStats) {
	t.Helper()
	var mu sync.Mutex
	var got []xstate
	o.DeviceSize = int64(len(base))
	st, err := Explore(context.Background(), l, bytes.NewReader(base), o, func(ctx context.Context, s State) error {
		img, err := s.Bytes()
		if err != nil {
			return err
		}
		mu.Lock()
		got = append(got, xstate{s.Description, img})
		mu.Unlock()
		return nil
	})
	require.NoError(t, err)
	slices.SortFunc(got, func(a, b xstate) int { return a.d.ID - b.d.ID })
	for i, s := range got {
		require.Equal(t, i, s.d.ID, "IDs are dense")
	}
	require.Equal(t, len(got), st.States)
	return got, st
}

func TestExplorePrefixStatesEqualReplayKernelLog(t *testing.T) {
	logImg := gunzip(t, "../testdata/log-writes/sector512/log.img.gz")
	final := gunzip(t, "../testdata/log-writes/sector512/data.img.gz")
	l, err := Open(bytes.NewReader(logImg))
	require.NoError(t, err)
	base := make([]byte, len(final)) // the kernel test started from zeros
	for _, every := range []bool{false, true} {
		states, st := xexplore(t, l, base, ExploreOptions{EveryEntry: every, MaxSubsetStates: -1, Parallel: 3})
		require.Equal(t, uint64(17), st.Entries)
		var cuts []uint64
		for _, s := range states {
			require.Equal(t, PrefixState, s.d.Kind)
			require.Equal(t, s.d.Cut, s.d.Prefix)
			require.Equal(t, xreplayFrom(t, l, base, s.d.Cut), s.img, "prefix state at cut %d", s.d.Cut)
			cuts = append(cuts, s.d.Cut)
		}
		if !every {
			// FLUSH/FUA entries: 1 (FUA), 5, 7, 14 (FLUSH); every one changes the image.
			require.Equal(t, []uint64{2, 6, 8, 15}, cuts)
			require.Zero(t, st.Duplicates)
		} else {
			// Marks and empty flushes leave the image as it was: duplicates.
			require.Equal(t, 17, st.States+st.Duplicates)
			require.Equal(t, []uint64{1, 2, 3, 4, 5, 7, 10, 11, 12, 13, 14}, cuts)
		}
		require.Equal(t, final, states[len(states)-1].img, "the last prefix is the final device")
	}
}

func TestExplorePrefixStatesEqualReplayRandom(t *testing.T) {
	for seed := range uint64(4) {
		x := xrandomLog(seed, 150, 256)
		l := x.open(t)
		base := xdata(0xA0, 256)
		states, st := xexplore(t, l, base, ExploreOptions{EveryEntry: true, MaxSubsetStates: -1, Parallel: 2})
		require.Equal(t, 150, st.States+st.Duplicates)
		for _, s := range states {
			require.Equal(t, xreplayFrom(t, l, base, s.d.Cut), s.img, "seed %d cut %d", seed, s.d.Cut)
		}
	}
}

// xdurable computes, independently of Explore, what must survive a cut:
// entries before the last FLUSH before the cut, then the FUA writes after
// it (except a FUA write the cut interrupts), in log order; and for each
// 512-byte block the contents the non-durable entries could have put there.
func xdurable(t testing.TB, l *Log, base []byte, cut uint64, inflight bool) (durable []byte, maybe map[int64][][]byte) {
	es := allEntries(t, l)
	f := uint64(0)
	for i := uint64(0); i < cut; i++ {
		if es[i].Flags&FlagFlush != 0 && !(inflight && i == cut-1) {
			f = i
		}
	}
	durable = xreplayFrom(t, l, base, f)
	maybe = map[int64][][]byte{}
	dev := &memDev{b: durable}
	for i := f; i < cut; i++ {
		e := es[i]
		if e.NrSectors == 0 || e.Flags&FlagMark != 0 {
			continue
		}
		data := make([]byte, e.Length(512))
		require.NoError(t, l.ReadData(e, data))
		fua := e.Flags&FlagFUA != 0 && !(inflight && i == cut-1)
		if fua && (e.Flags&FlagFlush == 0 || i == f) {
			_, err := dev.WriteAt(data, e.Offset(512))
			require.NoError(t, err)
			continue
		}
		for k := int64(0); k < int64(len(data)); k += 512 {
			off := e.Offset(512) + k
			maybe[off] = append(maybe[off], data[k:k+512])
		}
	}
	return durable, maybe
}

func TestExploreSubsetStatesKeepDurableWrites(t *testing.T) {
	for seed := range uint64(2) {
		x := xrandomLog(seed, 80, 64)
		l := x.open(t)
		es := allEntries(t, l)
		base := xdata(0x30, 64)
		states, st := xexplore(t, l, base, ExploreOptions{MaxSubsetStates: 20, Tear: true, Seed: seed, Parallel: 2})
		require.Positive(t, st.Subset)
		require.Positive(t, st.Torn)
		for _, s := range states {
			// Every state is exactly what ReplayState of its description gives.
			dev := &memDev{b: bytes.Clone(base)}
			require.NoError(t, ReplayState(l, s.d, dev))
			require.Equal(t, dev.b, s.img, "%v", s.d)
			if s.d.Kind != SubsetState {
				continue
			}
			// A FUA write the cut interrupted may be dropped or torn.
			last := es[s.d.Cut-1]
			inflight := last.Flags&(FlagFUA|FlagFlush) == FlagFUA &&
				(slices.Contains(s.d.Dropped, s.d.Cut-1) || s.d.Tear != nil && s.d.Tear.Entry == s.d.Cut-1)
			durable, maybe := xdurable(t, l, base, s.d.Cut, inflight)
			for off := int64(0); off < int64(len(base)); off += 512 {
				got := s.img[off : off+512]
				if bytes.Equal(got, durable[off:off+512]) {
					continue
				}
				ok := false
				for _, m := range maybe[off] {
					ok = ok || bytes.Equal(got, m)
				}
				require.True(t, ok, "%v: block at %d is neither durable nor from an unflushed write", s.d, off)
			}
		}
	}
}

func TestExploreFlushWithDataBelongsToNextEpoch(t *testing.T) {
	a, b, c := xdata('a', 1), xdata('b', 1), xdata('c', 1)
	for _, fua := range []bool{false, true} {
		fl := FlagFlush
		if fua {
			fl |= FlagFUA
		}
		// 0: W a@0   1: FLUSH(+data b@1)   2: W c@2   3: FLUSH
		l := newHandLog(512).write(0, 0, a).write(1, fl, b).write(2, 0, c).flush(FlagFlush).open(t)
		base := make([]byte, 4*512)
		states, _ := xexplore(t, l, base, ExploreOptions{MaxSubsetStates: 100})
		lostB := false
		for _, s := range states {
			blk := func(i int) []byte { return s.img[i*512 : (i+1)*512] }
			if s.d.Cut >= 2 {
				require.Equal(t, a, blk(0), "%v: the write before the first flush is durable", s.d)
			}
			if s.d.Cut >= 2 && !bytes.Equal(blk(1), b) {
				lostB = true
				require.False(t, fua, "%v: a FLUSH|FUA write's data is durable", s.d)
				require.Contains(t, s.d.Dropped, uint64(1))
				require.Equal(t, uint64(1), s.d.Prefix)
			}
		}
		require.Equal(t, !fua, lostB, "the data of a plain flush may be lost until the next flush")
	}
}

func TestExploreInflightFUAAndTear(t *testing.T) {
	old, nw := xdata('o', 4), xdata('n', 4)
	// 0: W old@0..3  1: FLUSH  2: FUA new@0..3
	l := newHandLog(512).write(0, 0, old).flush(FlagFlush).write(0, FlagFUA, nw).open(t)
	base := make([]byte, 8*512)
	states, st := xexplore(t, l, base, ExploreOptions{MaxSubsetStates: 50, Tear: true, Seed: 7})
	require.Positive(t, st.Torn)
	sawTorn := false
	for _, s := range states {
		if s.d.Cut >= 2 {
			// Every block of the FUA range is old or new, never anything else.
			for i := range 4 {
				got := s.img[i*512 : (i+1)*512]
				require.True(t, bytes.Equal(got, old[i*512:(i+1)*512]) || bytes.Equal(got, nw[i*512:(i+1)*512]), "%v", s.d)
			}
		}
		if s.d.Tear != nil {
			require.Contains(t, []uint64{0, 2}, s.d.Tear.Entry)
			data := old
			if s.d.Tear.Entry == 2 {
				sawTorn, data = true, nw
			}
			kept := 0
			for _, r := range s.d.Tear.Kept {
				for i := r.Start; i < r.End; i++ {
					require.Equal(t, data[i*512:(i+1)*512], s.img[i*512:(i+1)*512])
					kept++
				}
			}
			require.True(t, kept > 0 && kept < 4)
			require.Equal(t, SubsetState, s.d.Kind)
		}
	}
	require.True(t, sawTorn, "the in-flight FUA write is torn in some state")
}

func TestExploreDeduplicates(t *testing.T) {
	same := xdata('s', 1)
	// Two writes of the same data to the same block, then a flush: the
	// subsets {0} and {1} (and {0,1}) give the same image.
	l := newHandLog(512).write(0, 0, same).write(0, 0, same).flush(FlagFlush).mark("x").flush(FlagFlush).open(t)
	base := make([]byte, 2*512)
	states, st := xexplore(t, l, base, ExploreOptions{MaxSubsetStates: 100, EveryEntry: true})
	require.Equal(t, 2, st.States, "the base image and the written one")
	require.Positive(t, st.Duplicates)
	require.ElementsMatch(t, [][]byte{base, append(bytes.Clone(same), make([]byte, 512)...)}, [][]byte{states[0].img, states[1].img})

	// Random logs: no image is checked twice.
	x := xrandomLog(11, 200, 64)
	states, st = xexplore(t, x.open(t), make([]byte, 64*512), ExploreOptions{MaxSubsetStates: 40, Tear: true, EveryEntry: true})
	seen := map[[32]byte]Description{}
	for _, s := range states {
		h := sha256.Sum256(s.img)
		prev, dup := seen[h]
		require.False(t, dup, "%v duplicates %v", s.d, prev)
		seen[h] = s.d
	}
	require.Positive(t, st.Duplicates)
}

func TestExploreDeterministic(t *testing.T) {
	x := xrandomLog(5, 120, 64)
	l := x.open(t)
	base := make([]byte, 64*512)
	run := func(seed uint64, par int) []string {
		states, _ := xexplore(t, l, base, ExploreOptions{Seed: seed, Parallel: par, Tear: true, MaxSubsetStates: 30})
		var out []string
		for _, s := range states {
			out = append(out, fmt.Sprintf("%v %x", s.d, sha256.Sum256(s.img)))
		}
		return out
	}
	a := run(1, 1)
	require.Equal(t, a, run(1, 4), "same seed, different parallelism")
	require.NotEqual(t, a, run(2, 2), "another seed chooses other subsets")
}

func TestExploreBounds(t *testing.T) {
	x := xrandomLog(3, 300, 128)
	l := x.open(t)
	base := make([]byte, 128*512)
	states, st := xexplore(t, l, base, ExploreOptions{MaxStates: 25})
	require.Len(t, states, 25)
	require.True(t, st.Truncated)

	// MaxSubsetStates bounds the states of each cut.
	states, st = xexplore(t, l, base, ExploreOptions{MaxSubsetStates: 3, MaxStates: -1})
	require.False(t, st.Truncated)
	perCut := map[uint64]int{}
	for _, s := range states {
		if s.d.Kind == SubsetState {
			perCut[s.d.Cut]++
		}
	}
	for cut, n := range perCut {
		require.LessOrEqual(t, n, 3, "cut %d", cut)
	}
	require.LessOrEqual(t, st.Subset+st.Duplicates, 3*st.Cuts+st.Duplicates)
}

var errXBad = errors.New("bad state")

func TestExploreCheckerErrorStopsWithState(t *testing.T) {
	x := xrandomLog(8, 400, 128)
	l := x.open(t)
	base := make([]byte, 128*512)
	t.Cleanup(func() { testHookCheckFailed = nil })
	for _, par := range []int{1, 4} {
		// Checks of states after the first failing one (40) wait until
		// Explore has recorded that failure: each of the other par-1
		// checkers can then hold at most one such state, and none may
		// start once the failure is recorded. Without the wait, how many
		// states the other checkers get through first is up to the
		// scheduler.
		recorded := make(chan struct{})
		var once sync.Once
		testHookCheckFailed = func() { once.Do(func() { close(recorded) }) }
		var calls atomic.Int64
		st, err := Explore(context.Background(), l, bytes.NewReader(base), ExploreOptions{Parallel: par, Tear: true, Seed: 3},
			func(ctx context.Context, s State) error {
				calls.Add(1)
				if s.ID > 40 {
					<-recorded
				}
				if s.ID >= 40 && s.ID%3 == 1 {
					return fmt.Errorf("state %d: %w", s.ID, errXBad)
				}
				return nil
			})
		require.Error(t, err)
		require.ErrorIs(t, err, ErrCheck)
		require.ErrorIs(t, err, errXBad)
		var se *StateError
		require.ErrorAs(t, err, &se)
		require.Equal(t, 40, se.State.ID, "the first failing state is reported, whatever the parallelism")
		require.Equal(t, int(calls.Load()), st.States)
		require.GreaterOrEqual(t, st.States, 41, "every state before the failing one is checked")
		require.LessOrEqual(t, st.States, 41+par-1, "no check starts after the failure is recorded (par %d)", par)
		// The description rebuilds the failing state exactly.
		img, ierr := se.State.Bytes()
		require.NoError(t, ierr)
		dev := &memDev{b: bytes.Clone(base)}
		require.NoError(t, ReplayState(l, se.State.Description, dev))
		require.Equal(t, img, dev.b)
		require.Contains(t, err.Error(), se.State.Description.String())
	}

	// A panicking checker is a failure too.
	_, err := Explore(context.Background(), l, bytes.NewReader(base), ExploreOptions{},
		func(ctx context.Context, s State) error {
			if s.ID == 2 {
				panic("boom")
			}
			return nil
		})
	require.ErrorIs(t, err, ErrCheck)
	require.ErrorContains(t, err, "boom")
}

func TestExploreCancel(t *testing.T) {
	x := xrandomLog(9, 400, 128)
	l := x.open(t)
	base := make([]byte, 128*512)
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Cancel at the 10th call, whichever state it is, counting and
	// cancelling under one lock: cancelling at state ID 10, or after an
	// unlocked count, would let the other checkers run on freely while the
	// goroutine that is to cancel waits to be scheduled.
	var (
		mu    sync.Mutex
		calls int
	)
	st, err := Explore(ctx, l, bytes.NewReader(base), ExploreOptions{Parallel: 3}, func(ctx context.Context, s State) error {
		mu.Lock()
		defer mu.Unlock()
		if calls++; calls == 10 {
			cancel()
		}
		return nil
	})
	require.ErrorIs(t, err, context.Canceled)
	require.NotErrorIs(t, err, ErrCheck)
	require.LessOrEqual(t, st.States, 12, "after the cancelling call, at most the other 2 checkers' running calls finish (calls %d)", calls)
	xnoLeak(t, before)

	// A context cancelled before the start checks nothing.
	st, err = Explore(ctx, l, bytes.NewReader(base), ExploreOptions{}, func(ctx context.Context, s State) error { return nil })
	require.ErrorIs(t, err, context.Canceled)
	require.Zero(t, st.States)
}

func TestExploreErrors(t *testing.T) {
	l := newHandLog(512).write(10, 0, xdata('x', 2)).flush(FlagFlush).open(t)
	noop := func(ctx context.Context, s State) error { return nil }
	// Entry beyond the device.
	_, err := Explore(context.Background(), l, bytes.NewReader(make([]byte, 11*512)), ExploreOptions{}, noop)
	require.ErrorIs(t, err, ErrDeviceSize)
	// Unknown size.
	_, err = Explore(context.Background(), l, struct{ *xmemReader }{}, ExploreOptions{}, noop)
	require.ErrorIs(t, err, ErrDeviceSize)
	// nil base with a size: all zeros.
	st, err := Explore(context.Background(), l, nil, ExploreOptions{DeviceSize: 12 * 512}, func(ctx context.Context, s State) error {
		b, err := s.Bytes()
		if err != nil {
			return err
		}
		if !bytes.Equal(b[:10*512], make([]byte, 10*512)) {
			return errors.New("not zero")
		}
		return nil
	})
	require.NoError(t, err)
	require.Positive(t, st.States)
	// A malformed log is reported with its entry.
	img := newHandLog(512).write(0, 0, xdata('x', 1)).bytes(-1)
	img[512+40] = 1 // junk after the header
	bad, err := Open(bytes.NewReader(img))
	require.NoError(t, err)
	_, err = Explore(context.Background(), bad, nil, ExploreOptions{DeviceSize: 4096}, noop)
	require.ErrorIs(t, err, ErrMalformed)
	// Missing arguments.
	_, err = Explore(context.Background(), nil, nil, ExploreOptions{DeviceSize: 4096}, noop)
	require.ErrorIs(t, err, ErrInvalidEntry)
	_, err = Explore(context.Background(), l, nil, ExploreOptions{DeviceSize: 4096}, nil)
	require.ErrorIs(t, err, ErrInvalidEntry)
	// A bad entry after the ones a state needs does not stop ReplayState.
	img = newHandLog(512).write(0, FlagFUA, xdata('x', 1)).write(1, 0, xdata('y', 1)).bytes(-1)
	img = img[:len(img)-100] // entry 1's data is cut short
	trunc, err := Open(bytes.NewReader(img))
	require.NoError(t, err)
	dev := &memDev{b: make([]byte, 4096)}
	require.NoError(t, ReplayState(trunc, Description{Prefix: 1}, dev))
	require.Equal(t, xdata('x', 1), dev.b[:512])
	require.ErrorIs(t, ReplayState(trunc, Description{Prefix: 2}, dev), ErrTruncated)
	// ReplayState refuses a description beyond the log.
	require.ErrorIs(t, ReplayState(l, Description{Prefix: 5}, &memDev{b: make([]byte, 4096)}), ErrInvalidEntry)
	// ... and a Durable count outside Apply.
	require.ErrorIs(t, ReplayState(l, Description{Apply: []uint64{0}, Durable: 2}, &memDev{b: make([]byte, 8192)}), ErrInvalidEntry)
	require.ErrorIs(t, ReplayState(l, Description{Durable: -1}, &memDev{b: make([]byte, 8192)}), ErrInvalidEntry)
	// A discard far larger than memory (a bad log) is zeroed in chunks, not
	// buffered: the small target's error comes back, no panic.
	huge := newHandLog(512).discard(0, 1<<40).write(0, 0, xdata('z', 1)).open(t)
	dev = &memDev{b: bytes.Repeat([]byte{1}, 4096)}
	require.ErrorContains(t, ReplayState(huge, Description{Prefix: 1}, dev), "write beyond the end")
	require.NoError(t, ReplayState(huge, Description{Apply: []uint64{1}}, dev))
	require.Equal(t, xdata('z', 1), dev.b[:512])
}

type xmemReader struct{}

func (*xmemReader) ReadAt(p []byte, off int64) (int, error) { return 0, nil }

// TestExploreLinearCost checks that the work grows with the log, not with
// its square: doubling the entries (and so the prefix states) at most
// roughly doubles the allocations.
func TestExploreLinearCost(t *testing.T) {
	measure := func(n int) float64 {
		x := newHandLog(512)
		for i := range n {
			x.write(uint64(i%512)*8, 0, xdata(byte(i), 8)).flush(FlagFlush)
		}
		l := x.open(t)
		base := make([]byte, 2<<20)
		return testing.AllocsPerRun(2, func() {
			_, err := Explore(context.Background(), l, bytes.NewReader(base), ExploreOptions{Parallel: 1},
				func(ctx context.Context, s State) error { return nil })
			if err != nil {
				panic(err)
			}
		})
	}
	small, big := measure(500), measure(2000)
	t.Logf("allocations: 500 entries %.0f, 2000 entries %.0f", small, big)
	require.Less(t, big, 5*small, "4x the entries must cost about 4x, not 16x")
}

// xnoLeak waits (a little) until no more goroutines run than before.
func xnoLeak(t testing.TB, before int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			t.Fatalf("goroutines leaked: %d running, %d before", runtime.NumGoroutine(), before)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestExploreCoversTestdevCrashes cross-checks Explore's crash model with
// the project's crash-simulating device: a workload recorded through a
// Recorder on a testdev.Memory, whose power cut keeps a random subset of
// the unsynced writes, always ends in one of the states Explore generates.
func TestExploreCoversTestdevCrashes(t *testing.T) {
	const size = 64 << 10
	for seed := range uint64(40) {
		r := rand.New(rand.NewPCG(seed, 1))
		dev := testdev.NewMemory(size)
		logDev := testdev.NewMemory(1 << 20)
		rec, err := New(dev, logDev, Options{})
		require.NoError(t, err)
		for epoch := range 3 {
			for i := range 1 + r.IntN(3) {
				blk := int64(r.IntN(size/512 - 4))
				_, err := rec.WriteAt(xdata(byte(epoch*16+i), 1+r.IntN(3)), blk*512)
				require.NoError(t, err)
			}
			if epoch < 2 {
				require.NoError(t, rec.Sync())
			}
		}
		require.NoError(t, rec.Close())
		mode := []testdev.CrashMode{testdev.DropAll, testdev.KeepRandom, testdev.KeepAll}[seed%3]
		dev.Crash(testdev.CrashOptions{Mode: mode, Seed: seed})
		want := sha256.Sum256(dev.Bytes())

		l, err := Open(logDev)
		require.NoError(t, err)
		var found atomic.Bool
		_, err = Explore(context.Background(), l, bytes.NewReader(make([]byte, size)), ExploreOptions{MaxSubsetStates: 500, MaxStates: -1},
			func(ctx context.Context, s State) error {
				img, err := s.Bytes()
				if err == nil && sha256.Sum256(img) == want {
					found.Store(true)
				}
				return err
			})
		require.NoError(t, err)
		require.True(t, found.Load(), "seed %d (%v): the crashed device is not among the explored states", seed, mode)
	}
}
