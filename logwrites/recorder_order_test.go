package logwrites

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
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
			select {
			case <-stop:
				return
			default:
			}
			before := seq.Load()
			if before == last {
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
