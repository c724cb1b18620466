package logwrites

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/dmlog/dmlog/dirtylog/testdev"
	"github.com/stretchr/testify/require"
)

// A Preflush write takes the writes held when it is issued, not those that
// complete while its device flush runs: W1 issued, the Preflush write P
// issued (its flush held), W1 completes, P's flush completes: the log is
// P (FLUSH with data), then W1 (at Close). A Recorder that splices after
// the device sync logs W1 before P.
func TestPreflushWriteSplicesAtIssue(t *testing.T) {
	mem, logDev := testdev.NewMemory(1<<20), testdev.NewMemory(1<<20)
	g := newGated(mem)
	rec, err := New(g, logDev, Options{})
	require.NoError(t, err)
	_, err = rec.WriteAt(fill(512, 9), 4096) // W0, completed before P
	require.NoError(t, err)
	g.hold(512)
	w1 := make(chan error, 1)
	go func() {
		_, err := rec.WriteAt(fill(512, 1), 512)
		w1 <- err
	}()
	g.waitStarted(512) // W1 issued
	g.holdSync()
	entered, gate := g.syncEntered, g.syncGate
	pDone := make(chan error, 1)
	go func() {
		_, err := rec.WriteAtFlags(fill(1024, 2), 8192, Preflush)
		pDone <- err
	}()
	recv(t, entered) // P issued, its flush running
	g.release(512)
	require.NoError(t, recv(t, w1)) // W1 completes during P's flush
	close(gate)
	require.NoError(t, recv(t, pDone))
	require.Equal(t, []entrySig{W(8, 1), WF(FlagFlush, 16, 2), W(1, 1), M(EndMark)}, closedSigs(t, rec, logDev))
}

// Preflush writes racing plain writes and discards from many goroutines:
// every write that completed before a Preflush write was issued is logged
// before that write's FLUSH entry, every write is logged once, and the
// full replay equals the device. The same with Sync as the flush.
func TestPreflushWritesRacingWrites(t *testing.T) {
	for _, mode := range []string{"preflush-write", "sync"} {
		t.Run(mode, func(t *testing.T) { racingFlushes(t, mode == "preflush-write") })
	}
}

func racingFlushes(t *testing.T, preflushWrite bool) {
	const writers, perWriter, s = 4, 80, 512
	flushRegion := int64(writers*64) * s // the flusher's own 8 sectors
	dev, logDev := testdev.NewMemory(flushRegion+8*s), testdev.NewMemory(8<<20)
	rec, err := New(dev, logDev, Options{})
	require.NoError(t, err)
	var seq atomic.Uint64
	completedAt := make([][]uint64, writers)
	werr := make([]error, writers)
	var befores []uint64 // per flush: writes completed before it was issued
	var flushErr error
	stop := make(chan struct{})
	flusherDone := make(chan struct{})
	go func() {
		defer close(flusherDone)
		last := uint64(0)
		for k := 0; ; k++ {
			// Stop only once every completed write has been flushed: at
			// least one flush, however the goroutines are scheduled.
			before := seq.Load()
			if before == last {
				select {
				case <-stop:
					return
				default:
				}
				runtime.Gosched()
				continue
			}
			last = before
			if preflushWrite {
				p := make([]byte, s)
				binary.LittleEndian.PutUint32(p, 0xffff)
				binary.LittleEndian.PutUint32(p[4:], uint32(k))
				_, err := rec.WriteAtFlags(p, flushRegion+int64(k%8)*s, Preflush)
				if err != nil {
					flushErr = err
					return
				}
			} else if err := rec.Sync(); err != nil {
				flushErr = err
				return
			}
			befores = append(befores, before)
		}
	}()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 11))
			for i := range perWriter {
				off := int64(w*64+rng.IntN(60)) * s
				p := make([]byte, (1+rng.IntN(3))*s)
				binary.LittleEndian.PutUint32(p, uint32(w))
				binary.LittleEndian.PutUint32(p[4:], uint32(i))
				if rng.IntN(12) == 0 {
					if err := rec.Discard(int64(w*64+60)*s, s); err != nil {
						werr[w] = err
						return
					}
				}
				if _, err := rec.WriteAt(p, off); err != nil {
					werr[w] = fmt.Errorf("writer %d, write %d: %w", w, i, err)
					return
				}
				completedAt[w] = append(completedAt[w], seq.Add(1))
			}
		}()
	}
	wg.Wait()
	close(stop)
	recv(t, flusherDone)
	require.NoError(t, errors.Join(werr...))
	require.NoError(t, flushErr)
	require.NoError(t, rec.Close())

	l := openBytes(t, logDev.Bytes())
	pos := map[[2]uint32]int{}
	var flushPos []int
	for i, e := range allEntries(t, l) {
		if e.Flags&FlagFlush != 0 {
			flushPos = append(flushPos, i)
			require.Equal(t, preflushWrite, e.HasData(), "entry %d", i)
			continue
		}
		if e.HasData() {
			buf := make([]byte, e.Length(s))
			require.NoError(t, l.ReadData(e, buf))
			pos[[2]uint32{binary.LittleEndian.Uint32(buf), binary.LittleEndian.Uint32(buf[4:])}] = i
		}
	}
	require.Len(t, pos, writers*perWriter, "every write logged once")
	require.Len(t, flushPos, len(befores))
	require.NotEmpty(t, befores)
	for k, before := range befores {
		for w := range writers {
			for i, c := range completedAt[w] {
				if c <= before {
					require.Less(t, pos[[2]uint32{uint32(w), uint32(i)}], flushPos[k],
						"write %d/%d completed before flush %d was issued but is logged after it", w, i, k)
				}
			}
		}
	}
	target := testdev.NewMemory(dev.Size())
	require.NoError(t, Replay(l, target, ReplayOptions{}))
	require.True(t, bytes.Equal(dev.Bytes(), target.Bytes()), "full replay equals the device")
}

// Durable mode: once a Preflush, FUA or Preflush|FUA write returns, the
// log that survives a crash of the log device (only what was synced)
// holds it and every write before it, and its count covers them. A
// Recorder whose flush completion does not sync the log and rewrite the
// count in Durable mode leaves a log that reads as empty.
func TestDurablePreflushAndFUA(t *testing.T) {
	for _, f := range []WriteFlags{Preflush, FUA, Preflush | FUA} {
		t.Run(fmt.Sprint(Flags(f)), func(t *testing.T) {
			dev, logDev := testdev.NewMemory(1<<20), testdev.NewMemory(1<<20)
			rec, err := New(dev, logDev, Options{Durable: true})
			require.NoError(t, err)
			_, err = rec.WriteAt(fill(1024, 1), 0)
			require.NoError(t, err)
			_, err = rec.WriteAtFlags(fill(512, 2), 4096, f)
			require.NoError(t, err)
			crashed := logDev.DurableBytes()
			l := openBytes(t, crashed)
			es := allEntries(t, l)
			want := []entrySig{W(0, 2), WF(Flags(f), 8, 1)}
			if f == FUA {
				// A FUA write is logged at once, ahead of held writes.
				want = []entrySig{WF(FlagFUA, 8, 1)}
			}
			require.Equal(t, want, sigs(es))
			target := testdev.NewMemory(1 << 20)
			require.NoError(t, Replay(l, target, ReplayOptions{}))
			require.Equal(t, fill(512, 2), target.Bytes()[4096:4608])
			require.NoError(t, rec.Close())
		})
	}
}

// Held writes already on the log device are read back once when a FUA
// write or a mark goes ahead of them, and the log is what holding them in
// memory gives: the same bytes as with a log device that cannot be read.
func TestEarlyLoggedWritesOvertaken(t *testing.T) {
	work := func(rec *Recorder) {
		for i := range 4 {
			_, err := rec.WriteAt(fill(4096, byte(i+1)), int64(i)*4096)
			require.NoError(t, err)
		}
		_, err := rec.WriteAtFlags(fill(512, 9), 64<<10, FUA) // ahead of the 4 held
		require.NoError(t, err)
		_, err = rec.WriteAt(fill(512, 7), 128<<10)
		require.NoError(t, err)
		require.NoError(t, rec.Mark("m")) // ahead of the 5 held
		require.NoError(t, rec.Sync())
		_, err = rec.WriteAt(fill(1024, 5), 8192)
		require.NoError(t, err)
		require.NoError(t, rec.Discard(0, 4096))
		require.NoError(t, rec.Close())
	}
	logDev := testdev.NewMemory(1 << 20)
	rec, err := New(testdev.NewMemory(1<<20), logDev, Options{})
	require.NoError(t, err)
	work(rec)
	st := logDev.Stats()
	require.Equal(t, int64(2), st.Reads, "read back at the FUA write and at the mark")
	wlog := testdev.NewMemory(1 << 20)
	rec, err = New(testdev.NewMemory(1<<20), struct{ io.WriterAt }{wlog}, Options{Overwrite: true})
	require.NoError(t, err)
	work(rec)
	require.Equal(t, wlog.Bytes(), logDev.Bytes())
	require.Equal(t, []entrySig{WF(FlagFUA, 128, 1), M("m"), W(0, 8), W(8, 8), W(16, 8), W(24, 8), W(256, 1), F(), W(16, 2), D(0, 8), M(EndMark)},
		sigs(allEntries(t, openBytes(t, logDev.Bytes()))))
}

// A log write of an early-logged entry that fails once makes the Recorder
// hold writes in memory from then on (the entries already on the log
// device are read back), and the log is complete and in order; a read-back
// that fails disables logging with a clear error, and data I/O goes on.
func TestEarlyLogWriteFails(t *testing.T) {
	logMem := testdev.NewMemory(1 << 20)
	logDev := testdev.NewFaulty(logMem)
	logDev.Add(testdev.Rule{Op: testdev.OpWrite, Nth: 4}) // the super, 2 entries, then this
	rec, err := New(testdev.NewMemory(1<<20), logDev, Options{})
	require.NoError(t, err)
	for i := range 5 {
		_, err := rec.WriteAt(fill(512, byte(i+1)), int64(i)*512)
		require.NoError(t, err)
	}
	require.NoError(t, rec.Sync())
	require.NoError(t, rec.Err())
	require.NoError(t, rec.Close())
	require.Equal(t, []entrySig{W(0, 1), W(1, 1), W(2, 1), W(3, 1), W(4, 1), F(), M(EndMark)},
		sigs(allEntries(t, openBytes(t, logMem.Bytes()))))

	logMem = testdev.NewMemory(1 << 20)
	logDev = testdev.NewFaulty(logMem)
	logDev.Add(testdev.Rule{Op: testdev.OpRead, From: 2}) // New's blank check is read 1
	dev := testdev.NewMemory(1 << 20)
	rec, err = New(dev, logDev, Options{})
	require.NoError(t, err)
	_, err = rec.WriteAt(fill(512, 1), 0)
	require.NoError(t, err)
	// The mark goes ahead of the held write: it is read back, which fails.
	require.ErrorIs(t, rec.Mark("m"), ErrLoggingDisabled)
	_, err = rec.WriteAt(fill(512, 2), 512)
	require.NoError(t, err, "data I/O goes on")
	require.ErrorIs(t, rec.Err(), ErrLoggingDisabled)
	require.ErrorIs(t, rec.Err(), testdev.ErrInjected)
	require.Contains(t, rec.Err().Error(), "reading back")
	require.Equal(t, fill(512, 2), dev.Bytes()[512:1024])
	require.Error(t, rec.Close())
}

// Property: on random single-threaded workloads (plain, FUA, Preflush and
// Preflush|FUA writes, discards, marks, flushes; logs that fill up; data
// devices whose flushes fail; Durable or not), a Recorder over a log device it can read back (early logging)
// writes the same log as one over a write-only log device (held writes in
// memory): the same entries, counts and status, and errors at the same
// operations. DMLOG_SEED changes the seed.
func TestEarlyLoggingMatchesHeldInMemory(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, 8))
	for round := range 300 {
		o := Options{Durable: rng.IntN(4) == 0, Overwrite: true}
		logSize := int64(1 << 20)
		if rng.IntN(3) == 0 {
			logSize = int64(4+rng.IntN(60)) * 512 // fills up
			o.LogSize = logSize
		}
		readable, writeOnly := testdev.NewMemory(logSize), testdev.NewMemory(logSize)
		// Some rounds have a data device whose flushes fail now and then
		// (the same ones for both): writes go back ahead of later ones.
		devA, devB := testdev.NewFaulty(testdev.NewMemory(64<<10)), testdev.NewFaulty(testdev.NewMemory(64<<10))
		if rng.IntN(3) == 0 {
			every := 2 + rng.IntN(3)
			devA.Add(testdev.Rule{Op: testdev.OpSync, Every: every})
			devB.Add(testdev.Rule{Op: testdev.OpSync, Every: every})
		}
		recA, err := New(devA, readable, o)
		require.NoError(t, err)
		recB, err := New(devB, struct {
			io.WriterAt
			syncer
		}{writeOnly, writeOnly}, o)
		require.NoError(t, err)
		nops := 1 + rng.IntN(40)
		for op := range nops {
			k := rng.IntN(10)
			off := int64(rng.IntN(100)) * 512
			p := fill(512*(1+rng.IntN(8)), byte(op+1))
			var errA, errB error
			switch {
			case k < 4:
				_, errA = recA.WriteAt(p, off)
				_, errB = recB.WriteAt(p, off)
			case k == 4:
				f := []WriteFlags{FUA, Preflush, Preflush | FUA, Metadata}[rng.IntN(4)]
				_, errA = recA.WriteAtFlags(p, off, f)
				_, errB = recB.WriteAtFlags(p, off, f)
			case k == 5:
				errA, errB = recA.Discard(off, 1024), recB.Discard(off, 1024)
			case k == 6:
				name := fmt.Sprint("m", op)
				errA, errB = recA.Mark(name), recB.Mark(name)
			default:
				errA, errB = recA.Sync(), recB.Sync()
			}
			require.Equal(t, errB == nil, errA == nil, "round %d op %d: %v vs %v", round, op, errA, errB)
			require.Equal(t, recB.Status(), recA.Status(), "round %d op %d", round, op)
		}
		errA, errB := recA.Close(), recB.Close()
		require.Equal(t, errB == nil, errA == nil, "round %d: Close %v vs %v", round, errA, errB)
		require.Equal(t, recB.Status(), recA.Status(), "round %d", round)
		la, lb := openBytes(t, readable.Bytes()), openBytes(t, writeOnly.Bytes())
		require.Equal(t, lb.NumEntries(), la.NumEntries(), "round %d", round)
		ea, eb := allEntries(t, la), allEntries(t, lb)
		require.Equal(t, sigs(eb), sigs(ea), "round %d (seed %d)", round, seed)
		if n := len(ea); n > 0 {
			end := int64(ea[n-1].NextBlock()) * 512
			require.Equal(t, writeOnly.Bytes()[:end], readable.Bytes()[:end], "round %d: log bytes", round)
		}
		if o.Durable {
			// What survives a crash of the log device reads the same too.
			require.Equal(t, openBytes(t, writeOnly.DurableBytes()).NumEntries(), openBytes(t, readable.DurableBytes()).NumEntries(), "round %d", round)
		}
	}
}
