package logwrites

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/dmlog/dmlog/dirtylog/testdev"
	"github.com/stretchr/testify/require"
)

// golden workload: deterministic and single-threaded.
func goldenWorkload(t *testing.T, rec *Recorder, s int) {
	t.Helper()
	_, err := rec.WriteAt(fill(s, 'a'), 2*int64(s))
	require.NoError(t, err)
	_, err = rec.WriteAtFlags(fill(s, 'b'), 0, FUA|Metadata)
	require.NoError(t, err)
	require.NoError(t, rec.Discard(4*int64(s), 2*int64(s)))
	require.NoError(t, rec.Mark("m1"))
	require.NoError(t, rec.Sync())
	_, err = rec.WriteAtFlags(fill(2*s, 'c'), int64(s), Preflush|FUA)
	require.NoError(t, err)
	_, err = rec.WriteAt(fill(s, 'd'), 3*int64(s))
	require.NoError(t, err)
	require.NoError(t, rec.Close())
}

// TestGoldenVector compares the Recorder's log with one built byte by byte.
func TestGoldenVector(t *testing.T) {
	for _, s := range []int{512, 4096} {
		t.Run(fmt.Sprint(s), func(t *testing.T) {
			blk := func() []byte { return make([]byte, s) }
			hdr := func(sector, nr, flags, dataLen uint64, name string) []byte {
				b := blk()
				copy(b[0:], le64(sector))
				copy(b[8:], le64(nr))
				copy(b[16:], le64(flags))
				copy(b[24:], le64(dataLen))
				copy(b[32:], name)
				return b
			}
			var want []byte
			super := blk()
			copy(super, "rhswfsj\x00")
			super[8] = 1
			super[16] = 8 // nr_entries
			copy(super[24:], le32(uint32(s)))
			want = append(want, super...)
			want = append(want, hdr(0, 1, 0x12, 0, "")...) // FUA|METADATA b@0
			want = append(want, fill(s, 'b')...)
			want = append(want, hdr(0, 0, 0x08, 2, "m1")...) // mark ahead of held writes
			want = append(want, hdr(2, 1, 0, 0, "")...)      // a@2, held until the flush
			want = append(want, fill(s, 'a')...)
			want = append(want, hdr(4, 2, 0x04, 0, "")...) // discard, no data
			want = append(want, hdr(0, 0, 0x01, 0, "")...) // flush
			want = append(want, hdr(1, 2, 0x03, 0, "")...) // FLUSH|FUA with data
			want = append(want, fill(2*s, 'c')...)
			want = append(want, hdr(3, 1, 0, 0, "")...) // d@3, logged at close
			want = append(want, fill(s, 'd')...)
			want = append(want, hdr(0, 0, 0x08, 17, "dm-log-writes-end")...)

			logDev := testdev.NewMemory(int64(len(want) + 4*s))
			rec, err := New(testdev.NewMemory(int64(16*s)), logDev, Options{SectorSize: s})
			require.NoError(t, err)
			goldenWorkload(t, rec, s)
			got := logDev.Bytes()
			require.Equal(t, want, got[:len(want)])
			require.Equal(t, make([]byte, 4*s), got[len(want):])
			// Status: entries and the last allocated 512-byte sector.
			blocks := len(want) / s
			require.Equal(t, fmt.Sprintf("8 %d", blocks*s/512-1), rec.Status())
		})
	}
}

func TestStatusInitial(t *testing.T) {
	for s, want := range map[int]string{512: "0 0", 4096: "0 7"} {
		rec, err := New(testdev.NewMemory(1<<16), testdev.NewMemory(1<<16), Options{SectorSize: s})
		require.NoError(t, err)
		require.Equal(t, want, rec.Status())
		l := openBytesDev(t, rec) // an empty super is written at once
		require.Equal(t, uint64(0), l.NumEntries())
	}
}

func openBytesDev(t *testing.T, rec *Recorder) *Log {
	t.Helper()
	return openBytes(t, rec.logDev.(*testdev.Memory).Bytes())
}

func newRec(t *testing.T, o Options) (*Recorder, *testdev.Memory, *testdev.Memory) {
	t.Helper()
	dev, logDev := testdev.NewMemory(1<<20), testdev.NewMemory(4<<20)
	rec, err := New(dev, logDev, o)
	require.NoError(t, err)
	return rec, dev, logDev
}

func closedSigs(t *testing.T, rec *Recorder, logDev *testdev.Memory) []entrySig {
	t.Helper()
	require.NoError(t, rec.Close())
	return sigs(allEntries(t, openBytes(t, logDev.Bytes())))
}

// Test idea 7: W1,W2,W3,C3,C2,Wflush,C1,Cflush logs W3,W2,flush, and W1
// only after the next flush (here: at Close).
func TestDocOrdering(t *testing.T) {
	mem, logDev := testdev.NewMemory(1<<20), testdev.NewMemory(1<<20)
	g := newGated(mem)
	rec, err := New(g, logDev, Options{})
	require.NoError(t, err)
	done := map[int64]chan error{}
	for i := int64(1); i <= 3; i++ {
		off := i * 512
		g.hold(off)
		done[off] = make(chan error, 1)
		go func() {
			_, err := rec.WriteAt(fill(512, byte('0'+i)), off)
			done[off] <- err
		}()
		g.waitStarted(off) // W1, W2, W3 issued in order
	}
	g.release(3 * 512)
	require.NoError(t, recv(t, done[3*512])) // C3
	g.release(2 * 512)
	require.NoError(t, recv(t, done[2*512])) // C2
	g.holdSync()
	entered, gate := g.syncEntered, g.syncGate
	flushDone := make(chan error, 1)
	go func() { flushDone <- rec.Sync() }() // Wflush
	recv(t, entered)
	g.release(512)
	require.NoError(t, recv(t, done[512])) // C1, after the flush was issued
	close(gate)
	require.NoError(t, recv(t, flushDone)) // Cflush
	require.Equal(t, []entrySig{W(3, 1), W(2, 1), F(), W(1, 1), M(EndMark)}, closedSigs(t, rec, logDev))
}

// Test idea 8: FUA is logged at completion, ahead of held writes; a
// PREFLUSH|FUA write is one FLUSH|FUA entry with data after the spliced writes.
func TestFUAOrdering(t *testing.T) {
	rec, _, logDev := newRec(t, Options{})
	_, err := rec.WriteAt(fill(512, 1), 0)
	require.NoError(t, err)
	_, err = rec.WriteAtFlags(fill(1024, 2), 1024, FUA)
	require.NoError(t, err)
	_, err = rec.WriteAt(fill(512, 3), 4096)
	require.NoError(t, err)
	_, err = rec.WriteAtFlags(fill(512, 4), 8192, Preflush|FUA|Metadata)
	require.NoError(t, err)
	_, err = rec.WriteAt(fill(512, 5), 512)
	require.NoError(t, err)
	require.Equal(t, []entrySig{
		WF(FlagFUA, 2, 2), W(0, 1), W(8, 1), WF(FlagFlush|FlagFUA|FlagMetadata, 16, 1), W(1, 1), M(EndMark),
	}, closedSigs(t, rec, logDev))
}

// Test idea 9: discards are held like writes; a mark goes at once.
func TestDiscardAndMarkOrdering(t *testing.T) {
	rec, dev, logDev := newRec(t, Options{})
	_, err := rec.WriteAt(fill(1024, 7), 0)
	require.NoError(t, err)
	require.NoError(t, rec.Discard(0, 512))
	require.Equal(t, make([]byte, 512), dev.Bytes()[:512], "discard passed down")
	require.NoError(t, rec.Mark("m"))
	require.NoError(t, rec.Sync())
	require.Equal(t, []entrySig{M("m"), W(0, 2), D(0, 1), F(), M(EndMark)}, closedSigs(t, rec, logDev))
}

// superWatch checks, at every super-block write, that the count it carries
// covers only entries already written, and records the counts.
type superWatch struct {
	*testdev.Memory
	t      *testing.T
	mu     sync.Mutex
	counts []uint64
}

func (w *superWatch) WriteAt(p []byte, off int64) (int, error) {
	if off == 0 {
		n := binary.LittleEndian.Uint64(p[16:])
		img := w.Memory.Bytes()
		copy(img, p)
		l, err := Open(bytes.NewReader(img))
		require.NoError(w.t, err)
		require.Len(w.t, allEntries(w.t, l), int(n), "super covers unwritten entries")
		w.mu.Lock()
		w.counts = append(w.counts, n)
		w.mu.Unlock()
	}
	return w.Memory.WriteAt(p, off)
}

// Test idea 10: nr_entries is rewritten after every FUA/MARK entry and at
// close, never ahead of the entries it covers.
func TestSuperUpdates(t *testing.T) {
	w := &superWatch{Memory: testdev.NewMemory(1 << 20), t: t}
	rec, err := New(testdev.NewMemory(1<<20), w, Options{})
	require.NoError(t, err)
	_, err = rec.WriteAt(fill(512, 1), 0)
	require.NoError(t, err)
	require.NoError(t, rec.Sync()) // no super after a plain flush
	_, err = rec.WriteAt(fill(512, 1), 512)
	require.NoError(t, err)
	_, err = rec.WriteAtFlags(fill(512, 2), 1024, FUA) // super: 3
	require.NoError(t, err)
	require.NoError(t, rec.Discard(0, 512))
	require.NoError(t, rec.Mark("x")) // super: 4
	require.NoError(t, rec.Close())   // W@1, D@0, end mark: 7
	require.Equal(t, []uint64{0, 3, 4, 7}, w.counts)
}

// Test idea 10, crash of the recording program: with Durable the log left
// on the log device reads as a clean prefix covering every flush.
func TestDurableCrash(t *testing.T) {
	for seed := uint64(0); seed < 20; seed++ {
		logDev := testdev.NewMemory(1 << 20)
		rec, err := New(testdev.NewMemory(1<<20), logDev, Options{Durable: true})
		require.NoError(t, err)
		rng := rand.New(rand.NewPCG(seed, 1))
		flushed := uint64(0)
		for i := 0; i < 40; i++ {
			switch rng.IntN(6) {
			case 0:
				require.NoError(t, rec.Sync())
				l := openBytes(t, logDev.DurableBytes())
				flushed = l.NumEntries()
			case 1:
				require.NoError(t, rec.Mark(fmt.Sprint("m", i)))
			default:
				_, err := rec.WriteAt(fill(512*(1+rng.IntN(4)), byte(i)), int64(rng.IntN(100))*512)
				require.NoError(t, err)
			}
		}
		logDev.Crash(testdev.CrashOptions{Mode: testdev.KeepRandom, Seed: seed, Tear: true})
		l := openBytes(t, logDev.Bytes())
		require.GreaterOrEqual(t, l.NumEntries(), flushed)
		allEntries(t, l) // every counted entry is intact
	}
}

// Test idea 11: log full.
func TestLogFull(t *testing.T) {
	dev := testdev.NewMemory(1 << 20)
	logDev := testdev.NewMemory(1 << 20)
	// Room for the super and 5 blocks: the last block is never used.
	rec, err := New(dev, logDev, Options{LogSize: 7 * 512})
	require.NoError(t, err)
	require.NoError(t, rec.Mark("a"))                // block 1
	_, err = rec.WriteAtFlags(fill(1024, 1), 0, FUA) // blocks 2-4
	require.NoError(t, err)
	require.NoError(t, rec.Err())
	_, err = rec.WriteAtFlags(fill(1024, 2), 4096, FUA) // would need blocks 5-7
	require.NoError(t, err, "data I/O goes on")
	require.Equal(t, fill(1024, 2), dev.Bytes()[4096:5120])
	require.ErrorIs(t, rec.Err(), ErrLoggingDisabled)
	require.ErrorIs(t, rec.Err(), ErrLogFull)
	require.Contains(t, rec.Status(), " logging_disabled")
	require.Equal(t, "2 7 logging_disabled", rec.Status()) // kernel: next_sector advanced, then the check
	_, err = rec.WriteAt(fill(512, 3), 8192)
	require.NoError(t, err)
	require.Equal(t, fill(512, 3), dev.Bytes()[8192:8704])
	require.ErrorIs(t, rec.Mark("b"), ErrLoggingDisabled)
	require.ErrorIs(t, rec.Close(), ErrLogFull)
	l := openBytes(t, logDev.Bytes())
	require.Equal(t, []entrySig{M("a"), WF(FlagFUA, 0, 2)}, sigs(allEntries(t, l)))
}

// The log device's Size is used when Options.LogSize is zero.
func TestLogSizeFromDevice(t *testing.T) {
	rec, err := New(testdev.NewMemory(1<<20), testdev.NewMemory(4*512), Options{})
	require.NoError(t, err)
	require.NoError(t, rec.Mark("a"))
	require.NoError(t, rec.Mark("b"))
	require.ErrorIs(t, rec.Mark("c"), ErrLogFull)
}

// blockFile is a log device that looks like an *os.File opened on a block
// device: Stat reports a device of size 0, seeking to the end gives the
// size, and the file offset is restored afterwards.
type blockFile struct {
	*testdev.Memory
	off int64
}

type devInfo struct{ fs.FileInfo }

func (devInfo) Mode() fs.FileMode { return fs.ModeDevice | 0o600 }
func (devInfo) Size() int64       { return 0 }

func (b *blockFile) Stat() (fs.FileInfo, error) { return devInfo{}, nil }
func (b *blockFile) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
		b.off = off
	case io.SeekCurrent:
		b.off += off
	case io.SeekEnd:
		b.off = b.Memory.Size() + off
	}
	return b.off, nil
}

// A log device opened as a file: a block device's size (found by seeking
// to its end) bounds the log; a regular file grows, so it does not.
func TestLogSizeFromFile(t *testing.T) {
	bf := &blockFile{Memory: testdev.NewMemory(4 * 512), off: 123}
	// Only what an *os.File has: no Size method.
	type fileLike interface {
		statter
		io.Seeker
	}
	rec, err := New(testdev.NewMemory(1<<20), struct {
		io.WriterAt
		io.ReaderAt
		fileLike
	}{bf, bf, bf}, Options{})
	require.NoError(t, err)
	require.Equal(t, int64(123), bf.off, "the file offset was not restored")
	require.NoError(t, rec.Mark("a"))
	require.NoError(t, rec.Mark("b"))
	require.ErrorIs(t, rec.Mark("c"), ErrLogFull)
	// Explore sizes a base image on a block device the same way.
	size, err := deviceSize(struct {
		io.ReaderAt
		fileLike
	}{bf, bf}, 0)
	require.NoError(t, err)
	require.Equal(t, int64(4*512), size)

	f, err := os.Create(filepath.Join(t.TempDir(), "log"))
	require.NoError(t, err)
	defer f.Close()
	rec, err = New(testdev.NewMemory(1<<20), f, Options{})
	require.NoError(t, err, "an empty regular file is a log that grows")
	for i := range 8 {
		require.NoError(t, rec.Mark(fmt.Sprint(i)))
	}
	require.NoError(t, rec.Close())
	fi, err := f.Stat()
	require.NoError(t, err)
	require.GreaterOrEqual(t, fi.Size(), int64(9*512), "the log file did not grow")
}

// Test idea 11: a log write error disables logging, data goes on.
func TestLogWriteError(t *testing.T) {
	dev := testdev.NewMemory(1 << 20)
	logMem := testdev.NewMemory(1 << 20)
	logDev := testdev.NewFaulty(logMem)
	rec, err := New(dev, logDev, Options{})
	require.NoError(t, err)
	_, err = rec.WriteAtFlags(fill(512, 1), 0, FUA)
	require.NoError(t, err)
	logDev.Add(testdev.Rule{Label: "log", Op: testdev.OpWrite})
	_, err = rec.WriteAtFlags(fill(512, 2), 512, FUA)
	require.NoError(t, err)
	require.ErrorIs(t, rec.Err(), testdev.ErrInjected)
	require.ErrorIs(t, rec.Err(), ErrLoggingDisabled)
	require.Contains(t, rec.Status(), "logging_disabled")
	_, err = rec.WriteAt(fill(512, 3), 1024)
	require.NoError(t, err)
	require.NoError(t, rec.Sync())
	logDev.Clear()
	require.ErrorIs(t, rec.Close(), testdev.ErrInjected)
	require.Equal(t, fill(512, 3), dev.Bytes()[1024:1536])
	l := openBytes(t, logMem.Bytes())
	require.Equal(t, []entrySig{WF(FlagFUA, 0, 1)}, sigs(allEntries(t, l)))
}

// Test idea 12: a write, flush or discard that fails on the data device
// returns the error and is not logged; held writes stay held.
func TestFailedDataIO(t *testing.T) {
	mem := testdev.NewMemory(1 << 20)
	dev := testdev.NewFaulty(mem)
	logDev := testdev.NewMemory(1 << 20)
	rec, err := New(dev, logDev, Options{})
	require.NoError(t, err)
	_, err = rec.WriteAt(fill(512, 1), 0)
	require.NoError(t, err)
	dev.Add(testdev.Rule{Op: testdev.OpWrite, Off: 4096, Len: 512})
	_, err = rec.WriteAt(fill(512, 2), 4096)
	require.ErrorIs(t, err, testdev.ErrInjected)
	dev.Add(testdev.Rule{Op: testdev.OpSync, Nth: 1})
	require.ErrorIs(t, rec.Sync(), testdev.ErrInjected)
	dev.Add(testdev.Rule{Op: testdev.OpDiscard})
	require.ErrorIs(t, rec.Discard(0, 512), testdev.ErrInjected)
	require.NoError(t, rec.Sync())
	require.Equal(t, []entrySig{W(0, 1), F(), M(EndMark)}, closedSigs(t, rec, logDev))
}

// Test idea 3: unaligned I/O is rejected and not performed.
func TestUnaligned(t *testing.T) {
	for _, s := range []int{512, 4096} {
		rec, dev, _ := newRec(t, Options{SectorSize: s})
		for _, c := range []struct{ off, n int64 }{{1, int64(s)}, {int64(s), int64(s) - 1}, {int64(s) - 1, 1}, {int64(s) / 2, int64(s)}} {
			_, err := rec.WriteAt(fill(int(c.n), 9), c.off)
			require.ErrorIs(t, err, ErrUnaligned)
			require.ErrorIs(t, rec.Discard(c.off, c.n), ErrUnaligned)
		}
		require.Equal(t, make([]byte, 1<<20), dev.Bytes())
		// The edges that are aligned pass.
		_, err := rec.WriteAt(fill(s, 9), int64(s))
		require.NoError(t, err)
		require.NoError(t, rec.Discard(0, int64(s)))
	}
}

// Test idea 4: mark names up to S-33 bytes; longer, empty or NUL names are
// rejected.
func TestMarkNames(t *testing.T) {
	for _, s := range []int{512, 4096} {
		rec, _, logDev := newRec(t, Options{SectorSize: s})
		long := string(fill(s-33, 'n'))
		require.NoError(t, rec.Mark(long))
		require.ErrorIs(t, rec.Mark(long+"n"), ErrInvalidMark)
		require.ErrorIs(t, rec.Mark(""), ErrInvalidMark)
		require.ErrorIs(t, rec.Mark("a\x00b"), ErrInvalidMark)
		require.NoError(t, rec.Mark("with space"))
		require.Equal(t, []entrySig{M(long), M("with space"), M(EndMark)}, closedSigs(t, rec, logDev))
		raw := logDev.Bytes()[s : 2*s]
		require.Equal(t, []byte{0x08, 0, 0, 0, 0, 0, 0, 0}, raw[16:24])
		require.Equal(t, byte(0), raw[s-1], "at least one zero after the name")
	}
}

// Test idea 13: unknown write flags are rejected.
func TestWriteFlags(t *testing.T) {
	rec, _, logDev := newRec(t, Options{})
	_, err := rec.WriteAtFlags(fill(512, 1), 0, WriteFlags(FlagDiscard))
	require.ErrorIs(t, err, ErrInvalidArgument)
	_, err = rec.WriteAtFlags(fill(512, 1), 0, Metadata)
	require.NoError(t, err)
	_, err = rec.WriteAtFlags(nil, 0, FUA) // empty non-flush: nothing
	require.NoError(t, err)
	_, err = rec.WriteAtFlags(nil, 0, Preflush) // empty flush
	require.NoError(t, err)
	require.Equal(t, []entrySig{WF(FlagMetadata, 0, 1), F(), M(EndMark)}, closedSigs(t, rec, logDev))
}

// The log holds the data as submitted, not whatever the buffer later holds.
func TestDataAsSubmitted(t *testing.T) {
	rec, _, logDev := newRec(t, Options{})
	p := fill(512, 'x')
	_, err := rec.WriteAt(p, 0)
	require.NoError(t, err)
	copy(p, fill(512, 'y'))
	require.NoError(t, rec.Close())
	l := openBytes(t, logDev.Bytes())
	es := allEntries(t, l)
	got := make([]byte, 512)
	require.NoError(t, l.ReadData(es[0], got))
	require.Equal(t, fill(512, 'x'), got)
}

func TestClosed(t *testing.T) {
	rec, _, _ := newRec(t, Options{})
	require.NoError(t, rec.Close())
	require.ErrorIs(t, rec.Close(), ErrClosed)
	_, err := rec.WriteAt(fill(512, 1), 0)
	require.ErrorIs(t, err, ErrClosed)
	require.ErrorIs(t, rec.Sync(), ErrClosed)
	require.ErrorIs(t, rec.Discard(0, 512), ErrClosed)
	require.ErrorIs(t, rec.Mark("x"), ErrClosed)
}

func TestNewErrors(t *testing.T) {
	for _, s := range []int{-1, 100, 513, 1000, 2 * MaxSectorSize} {
		_, err := New(testdev.NewMemory(1<<16), testdev.NewMemory(1<<16), Options{SectorSize: s})
		require.ErrorIs(t, err, ErrBadSectorSize, "%d", s)
	}
	_, err := New(testdev.NewMemory(1<<16), testdev.NewMemory(512), Options{})
	require.ErrorIs(t, err, ErrLogFull)
	_, err = New(testdev.NewMemory(1<<16), testdev.NewMemory(1<<16), Options{LogSize: -1})
	require.ErrorIs(t, err, ErrInvalidArgument)
	f := testdev.NewFaulty(testdev.NewMemory(1 << 16))
	f.Add(testdev.Rule{Op: testdev.OpWrite})
	_, err = New(testdev.NewMemory(1<<16), f, Options{})
	require.ErrorIs(t, err, testdev.ErrInjected)
}

// Test idea 14: many goroutines, completions racing flushes. Each writer owns
// a region and tags each write with a unique id; a single flusher records
// which writes had completed before each Sync was issued, and every one of
// them must be logged before that flush entry. A full replay must equal the
// device.
func TestConcurrentWritersAndFlushes(t *testing.T) {
	const writers, perWriter, s = 6, 60, 512
	dev, logDev := testdev.NewMemory(writers*64*s), testdev.NewMemory(8<<20)
	rec, err := New(dev, logDev, Options{})
	require.NoError(t, err)
	var seq atomic.Uint64
	completedAt := make([][]uint64, writers) // completion seq per write
	var wg sync.WaitGroup
	stop := make(chan struct{})
	type flushRec struct{ before uint64 }
	var flushes []flushRec
	flusherDone := make(chan struct{})
	var flushErr error // set by the flusher, read after flusherDone
	go func() {
		defer close(flusherDone)
		// Flush whenever a write has completed since the last flush was
		// issued: flushes race completions, and there are at most as many
		// as writes (an unconditional loop could fill the log with empty
		// flushes on a fast run).
		last := uint64(0)
		for {
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
			if err := rec.Sync(); err != nil {
				flushErr = err
				return
			}
			flushes = append(flushes, flushRec{before})
		}
	}()
	werr := make([]error, writers) // each writer's first error
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for i := range perWriter {
				n := 1 + rng.IntN(3)
				off := int64(w*64+rng.IntN(58)) * s // sectors 0..59 of the region
				p := make([]byte, n*s)
				binary.LittleEndian.PutUint32(p, uint32(w))
				binary.LittleEndian.PutUint32(p[4:], uint32(i))
				if rng.IntN(15) == 0 {
					if err := rec.Discard(off, s); err != nil {
						werr[w] = fmt.Errorf("writer %d: discard: %w", w, err)
						return
					}
				}
				var f WriteFlags
				if rng.IntN(10) == 0 {
					// FUA bypasses held writes, so an FUA write over a held
					// plain write would replay in the other order (as in
					// the kernel): FUA writes get their own sectors.
					f = FUA
					p = p[:s]
					off = int64(w*64+60+rng.IntN(4)) * s
				}
				if _, err := rec.WriteAtFlags(p, off, f); err != nil {
					werr[w] = fmt.Errorf("writer %d: write %d: %w", w, i, err)
					return
				}
				completedAt[w] = append(completedAt[w], seq.Add(1))
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-flusherDone
	require.NoError(t, errors.Join(werr...))
	require.NoError(t, flushErr)
	require.NoError(t, rec.Close())

	l := openBytes(t, logDev.Bytes())
	es := allEntries(t, l)
	// Position in the log of every write, and of every flush entry.
	pos := map[[2]uint32]int{}
	var flushPos []int
	for i, e := range es {
		switch {
		case e.Flags&FlagFlush != 0:
			flushPos = append(flushPos, i)
		case e.HasData():
			buf := make([]byte, e.Length(l.SectorSize()))
			require.NoError(t, l.ReadData(e, buf))
			pos[[2]uint32{binary.LittleEndian.Uint32(buf), binary.LittleEndian.Uint32(buf[4:])}] = i
		}
	}
	require.Len(t, pos, writers*perWriter, "every write logged once")
	require.Len(t, flushPos, len(flushes))
	for k, f := range flushes {
		for w := range writers {
			for i, c := range completedAt[w] {
				if c <= f.before {
					require.Less(t, pos[[2]uint32{uint32(w), uint32(i)}], flushPos[k], "write %d/%d completed before flush %d was issued", w, i, k)
				}
			}
		}
	}
	target := testdev.NewMemory(dev.Size())
	require.NoError(t, Replay(l, target, ReplayOptions{}))
	if db, tb := dev.Bytes(), target.Bytes(); !bytes.Equal(db, tb) {
		for i := range db {
			if db[i] != tb[i] {
				t.Fatalf("full replay differs from the device at %d (sector %d): device % x, replay % x", i, i/s, db[i/s*s:i/s*s+8], tb[i/s*s:i/s*s+8])
			}
		}
	}
}

// A Recorder starts no goroutines, so Close leaves none behind.
func TestNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	var errs []error
	for range 3 {
		rec, _, _ := newRec(t, Options{Durable: true})
		_, err := rec.WriteAt(fill(512, 1), 0)
		errs = append(errs, err, rec.Mark("m"))
		_, err = rec.WriteAtFlags(fill(512, 2), 512, FUA)
		errs = append(errs, err, rec.Discard(0, 512), rec.Sync())
		require.LessOrEqual(t, runtime.NumGoroutine(), before, "a working Recorder runs no goroutine")
		errs = append(errs, rec.Close())
	}
	require.NoError(t, errors.Join(errs...))
	xnoLeak(t, before)
}

// The source comment's example Wa,Wb,Wc,Cc,Ca,FLUSH,FUAd,Cb,CFLUSH,CFUAd:
// by the code (and the rst doc) the splice happens when the flush is
// issued, so b, completed after that, lands after the flush and the FUA
// write: c,a,flush,fuad,b (not the 2019 comment's c,a,b,flush,fuad).
func TestCommentOrderingExample(t *testing.T) {
	mem, logDev := testdev.NewMemory(1<<20), testdev.NewMemory(1<<20)
	g := newGated(mem)
	rec, err := New(g, logDev, Options{})
	require.NoError(t, err)
	const a, b, c, d = 512, 1024, 1536, 2048
	done := map[int64]chan error{}
	write := func(off int64, f WriteFlags) {
		g.hold(off)
		done[off] = make(chan error, 1)
		go func() {
			_, err := rec.WriteAtFlags(fill(512, byte(off/512)), off, f)
			done[off] <- err
		}()
		g.waitStarted(off)
	}
	write(a, 0)
	write(b, 0)
	write(c, 0)
	g.release(c)
	require.NoError(t, recv(t, done[c]))
	g.release(a)
	require.NoError(t, recv(t, done[a]))
	g.holdSync()
	entered, gate := g.syncEntered, g.syncGate
	flushDone := make(chan error, 1)
	go func() { flushDone <- rec.Sync() }()
	recv(t, entered) // FLUSH issued: c and a spliced
	write(d, FUA)
	g.release(b)
	require.NoError(t, recv(t, done[b])) // Cb, after the flush was issued
	close(gate)
	require.NoError(t, recv(t, flushDone)) // CFLUSH
	g.release(d)
	require.NoError(t, recv(t, done[d])) // CFUAd
	require.Equal(t, []entrySig{W(3, 1), W(1, 1), F(), WF(FlagFUA, 4, 1), W(2, 1), M(EndMark)}, closedSigs(t, rec, logDev))
}

// Log full in the middle of the held writes a flush logs: the entries that
// fit are logged, the rest and the flush are dropped, as in the kernel.
func TestLogFullInBatch(t *testing.T) {
	dev, logDev := testdev.NewMemory(1<<20), testdev.NewMemory(1<<20)
	// Super + 3 entries of 2 blocks fit below block 8 (the last block is never used).
	rec, err := New(dev, logDev, Options{LogSize: 9 * 512})
	require.NoError(t, err)
	require.NoError(t, rec.Mark("a")) // block 1; super count 1
	for i := range 5 {
		_, err := rec.WriteAt(fill(512, byte(i+1)), int64(i)*512)
		require.NoError(t, err)
	}
	require.NoError(t, rec.Sync(), "data I/O goes on")
	require.ErrorIs(t, rec.Err(), ErrLogFull)
	require.Equal(t, "4 9 logging_disabled", rec.Status())
	require.ErrorIs(t, rec.Close(), ErrLogFull)
	// The super still says 1 (the last FUA/MARK); the entries that made it
	// are intact after it.
	img := logDev.Bytes()
	l := openBytes(t, img)
	require.Equal(t, []entrySig{M("a")}, sigs(allEntries(t, l)))
	copy(img[16:], le64(4))
	require.Equal(t, []entrySig{M("a"), W(0, 1), W(1, 1), W(2, 1)}, sigs(allEntries(t, openBytes(t, img))))
	require.Equal(t, fill(512, 5), dev.Bytes()[2048:2560])
}

// A log write error while logging held writes disables logging.
func TestLogWriteErrorInBatch(t *testing.T) {
	logMem := testdev.NewMemory(1 << 20)
	logDev := testdev.NewFaulty(logMem)
	rec, err := New(testdev.NewMemory(1<<20), logDev, Options{})
	require.NoError(t, err)
	_, err = rec.WriteAt(fill(512, 1), 0)
	require.NoError(t, err)
	logDev.Add(testdev.Rule{Op: testdev.OpWrite})
	require.NoError(t, rec.Sync())
	require.ErrorIs(t, rec.Err(), testdev.ErrInjected)
	require.Contains(t, rec.Status(), "logging_disabled")
	logDev.Clear()
	_, err = rec.WriteAt(fill(512, 2), 512)
	require.NoError(t, err)
	require.ErrorIs(t, rec.Close(), ErrLoggingDisabled)
	require.Equal(t, uint64(0), openBytes(t, logMem.Bytes()).NumEntries())
}

// Test idea 3, the other choice: with ReadModifyWrite, unaligned writes are
// widened to whole sectors using the device's current contents.
func TestReadModifyWrite(t *testing.T) {
	for _, s := range []int{512, 4096} {
		dev, logDev := testdev.NewMemory(1<<20), testdev.NewMemory(1<<20)
		init := make([]byte, 1<<20)
		for i := range init {
			init[i] = byte(i % 251)
		}
		_, err := dev.WriteAt(init, 0)
		require.NoError(t, err)
		rec, err := New(dev, logDev, Options{SectorSize: s, ReadModifyWrite: true})
		require.NoError(t, err)
		model := bytes.Clone(init)
		cases := []struct {
			off int64
			n   int
			f   WriteFlags
		}{
			{300, 100, 0},                     // inside one sector
			{int64(s) - 10, 20, 0},            // across a sector boundary
			{int64(3 * s), s + 7, FUA},        // aligned start, ragged end
			{int64(5*s) + 1, 2*s - 1, 0},      // ragged start, aligned end
			{int64(8*s) + 5, 3 * s, Preflush}, // both ragged, several sectors
			{int64(12 * s), s, 0},             // aligned: unchanged path
		}
		for i, c := range cases {
			p := fill(c.n, byte(0xa0+i))
			n, err := rec.WriteAtFlags(p, c.off, c.f)
			require.NoError(t, err)
			require.Equal(t, c.n, n)
			copy(model[c.off:], p)
		}
		require.Equal(t, model, dev.Bytes())
		require.NoError(t, rec.Close())
		l := openBytes(t, logDev.Bytes())
		target := testdev.NewMemoryFrom(init)
		require.NoError(t, Replay(l, target, ReplayOptions{}))
		require.Equal(t, model, target.Bytes())
		es := allEntries(t, l)
		require.Equal(t, entrySig{FlagFUA, 3, 2, ""}, sigs(es)[0])
		require.ErrorIs(t, rec.Discard(1, int64(s)), ErrUnaligned)
		// Offsets at the edge of int64 are refused, not a panic.
		_, err = rec.WriteAt(fill(10, 1), math.MaxInt64-5)
		require.ErrorIs(t, err, ErrInvalidArgument)
	}
}

// The write path's cost: a plain write is one data-device write and one
// log write of its entry, where it will stay (the log device can be read
// back, so the data is not copied to memory); a flush is one data-device
// sync and one log write of the flush entry; a FUA write is a write and a
// sync of the data device, then the entry and the super block in the log.
// With a log device that cannot be read, the writes are held in memory and
// a flush logs them and its entry with one log write. In the steady state
// nothing is allocated.
func TestWritePathCost(t *testing.T) {
	rec, dev, logDev := newRec(t, Options{})
	p := fill(4096, 1)
	round := func() {
		for i := range 16 {
			_, err := rec.WriteAt(p, int64(i)*4096)
			require.NoError(t, err)
		}
		require.NoError(t, rec.Sync())
	}
	round()
	dev.ResetStats()
	logDev.ResetStats()
	round()
	require.Equal(t, testdev.Stats{Writes: 16, Syncs: 1, BytesWritten: 16 * 4096}, dev.Stats())
	require.Equal(t, testdev.Stats{Writes: 17, BytesWritten: 16*(512+4096) + 512}, logDev.Stats())

	dev.ResetStats()
	logDev.ResetStats()
	_, err := rec.WriteAtFlags(p, 0, FUA)
	require.NoError(t, err)
	require.Equal(t, testdev.Stats{Writes: 1, Syncs: 1, BytesWritten: 4096}, dev.Stats())
	require.Equal(t, testdev.Stats{Writes: 2, BytesWritten: 512 + 4096 + 512}, logDev.Stats())
	require.NoError(t, rec.Close())

	// A write-only log device: held in memory, one log write per flush.
	wdev, wlog := testdev.NewMemory(1<<20), testdev.NewMemory(4<<20)
	wrec, err := New(wdev, struct{ io.WriterAt }{wlog}, Options{Overwrite: true})
	require.NoError(t, err)
	for i := range 16 {
		_, err := wrec.WriteAt(p, int64(i)*4096)
		require.NoError(t, err)
	}
	wlog.ResetStats()
	require.NoError(t, wrec.Sync())
	require.Equal(t, testdev.Stats{Writes: 1, BytesWritten: 16*(512+4096) + 512}, wlog.Stats())
	require.NoError(t, wrec.Close())

	if !raceEnabled {
		mrec, err := New(newMemDev(1<<20), newMemDev(64<<20), Options{})
		require.NoError(t, err)
		allocs := testing.AllocsPerRun(50, func() {
			for i := range 16 {
				mrec.WriteAt(p, int64(i)*4096)
			}
			mrec.Sync()
			mrec.WriteAtFlags(p, 0, FUA)
			mrec.Mark("m")
		})
		require.Zero(t, allocs, "allocations per 16 writes, a sync, a FUA write and a mark")
	}
}
