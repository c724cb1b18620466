package logwrites

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/dmlog/dmlog/dirtylog/testdev"
)

// memDev is a plain in-memory device: a byte slice, Sync a no-op. It is the
// baseline "device" of the benchmarks' memory variants (testdev.Memory does
// crash bookkeeping that would dominate) and the tests' plain target.
type memDev struct {
	mu sync.RWMutex
	b  []byte
}

func newMemDev(n int) *memDev { return &memDev{b: make([]byte, n)} }

func (m *memDev) ReadAt(p []byte, off int64) (int, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if off >= int64(len(m.b)) {
		return 0, io.EOF
	}
	n := copy(p, m.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (m *memDev) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if off < 0 || off+int64(len(p)) > int64(len(m.b)) {
		return 0, fmt.Errorf("%w: memDev: write beyond the end (%d bytes at %d, device of %d)", testdev.ErrOutOfRange, len(p), off, len(m.b))
	}
	return copy(m.b[off:], p), nil
}

func (m *memDev) Sync() error  { return nil }
func (m *memDev) Size() int64  { return int64(len(m.b)) }
func (m *memDev) Close() error { return nil }

type benchDev interface {
	Device
	io.Closer
	Sync() error
}

// devKinds are the device kinds benchmarks run on: regular files in a
// temporary directory (Sync is fsync) and plain memory.
var devKinds = []struct {
	name string
	open func(b *testing.B, name string, size int) benchDev
}{
	{"file", func(b *testing.B, name string, size int) benchDev {
		f, err := os.Create(filepath.Join(b.TempDir(), name))
		if err != nil {
			b.Fatal(err)
		}
		if err := f.Truncate(int64(size)); err != nil {
			b.Fatal(err)
		}
		return f
	}},
	{"mem", func(b *testing.B, name string, size int) benchDev { return newMemDev(size) }},
}

const (
	benchWrite   = 64 << 10
	benchPerSync = 16
	benchDevSize = 16 << 20
	benchRounds  = 32 // Sync rounds per recorder before it is recreated (32 MiB of log)
)

// BenchmarkRecorder compares a Recorder with the plain device it wraps, in
// the same run: each iteration is 16 writes of 64 KiB and a Sync, on the
// plain device and then through a Recorder. It reports both throughputs and
// their ratio (recorder / plain; at most about 0.5 where writes cost I/O,
// since every byte is written twice). It also times the floor, the same
// device and log writes made directly, without a Recorder, and reports its
// ratio to plain (floor-ratio: the best a Recorder could do) and the
// Recorder's to it (rec/floor: what the Recorder's own work costs). The
// file-durable variant uses Options.Durable (the log is fsynced at every
// flush too).
func BenchmarkRecorder(b *testing.B) {
	for _, k := range devKinds {
		for _, durable := range []bool{false, true} {
			name := k.name
			if durable {
				if k.name != "file" {
					continue
				}
				name += "-durable"
			}
			b.Run(name, func(b *testing.B) { benchRecorder(b, k.open, benchDevSize, Options{Durable: durable}) })
		}
	}
	// The 16 MiB devices above stay warm in the caches while the log (32
	// MiB a recorder) streams through memory they have not seen, which
	// favours the plain baseline; with a 64 MiB device neither is warm.
	b.Run("mem-64MiB", func(b *testing.B) {
		benchRecorder(b, func(b *testing.B, _ string, size int) benchDev { return newMemDev(size) }, 4*benchDevSize, Options{})
	})
}

func benchRecorder(b *testing.B, open func(b *testing.B, name string, size int) benchDev, devSize int, o Options) {
	logBytes := benchRounds*benchPerSync*(benchWrite+4096) + (1 << 20)
	plain := open(b, "plain", devSize)
	dev := open(b, "dev", devSize)
	logDev := open(b, "log", logBytes)
	floorDev := open(b, "floor-dev", devSize)
	floorLog := open(b, "floor-log", logBytes)
	for _, d := range []benchDev{plain, dev, logDev, floorDev, floorLog} {
		defer d.Close()
	}
	p := make([]byte, benchWrite)
	for i := range p {
		p[i] = byte(i)
	}
	var rec *Recorder
	o.Overwrite = true // a new log over the last one every benchRounds
	newRec := func() {
		var err error
		rec, err = New(dev, logDev, o)
		if err != nil {
			b.Fatal(err)
		}
	}
	newRec()
	check := func(_ int, err error) {
		if err != nil {
			b.Fatal(err)
		}
	}
	// The floor: the device and log writes a Recorder makes (an entry's
	// header block, then its data, right after the entry before; a flush
	// entry after the data device's sync; with Durable, the log synced
	// around a super block write), made directly, with no Recorder.
	hdr, flushHdr, super := make([]byte, 512), make([]byte, 512), make([]byte, 512)
	putHeader(flushHdr, 0, 0, FlagFlush, "")
	floorPos := int64(512)
	var tPlain, tRec, tFloor time.Duration
	b.SetBytes(benchWrite * benchPerSync)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i > 0 && i%benchRounds == 0 {
			b.StopTimer()
			if err := rec.Close(); err != nil {
				b.Fatal(err)
			}
			newRec()
			floorPos = 512
			b.StartTimer()
		}
		base := int64(i*benchPerSync*benchWrite) % int64(devSize)
		// One round: benchPerSync writes, then a Sync.
		round := func(d interface {
			io.WriterAt
			Sync() error
		}) {
			for j := 0; j < benchPerSync; j++ {
				check(d.WriteAt(p, base+int64(j*benchWrite)))
			}
			if err := d.Sync(); err != nil {
				b.Fatal(err)
			}
		}
		floorRound := func() {
			for j := 0; j < benchPerSync; j++ {
				off := base + int64(j*benchWrite)
				check(floorDev.WriteAt(p, off))
				putHeader(hdr, uint64(off/512), benchWrite/512, 0, "")
				check(floorLog.WriteAt(hdr, floorPos))
				check(floorLog.WriteAt(p, floorPos+512))
				floorPos += 512 + benchWrite
			}
			if err := floorDev.Sync(); err != nil {
				b.Fatal(err)
			}
			check(floorLog.WriteAt(flushHdr, floorPos))
			floorPos += 512
			if o.Durable {
				if err := floorLog.Sync(); err != nil {
					b.Fatal(err)
				}
				check(floorLog.WriteAt(super, 0))
				if err := floorLog.Sync(); err != nil {
					b.Fatal(err)
				}
			}
		}
		// Rotate which goes first, so that none always follows another's
		// cache or disk activity.
		runs := []struct {
			f func()
			t *time.Duration
		}{{func() { round(plain) }, &tPlain}, {func() { round(rec) }, &tRec}, {floorRound, &tFloor}}
		for k := range runs {
			r := runs[(i+k)%len(runs)]
			t0 := time.Now()
			r.f()
			*r.t += time.Since(t0)
		}
	}
	b.StopTimer()
	if err := rec.Close(); err != nil {
		b.Fatal(err)
	}
	mb := float64(b.N) * benchWrite * benchPerSync / 1e6
	b.ReportMetric(mb/tPlain.Seconds(), "plain-MB/s")
	b.ReportMetric(mb/tRec.Seconds(), "rec-MB/s")
	b.ReportMetric(tPlain.Seconds()/tRec.Seconds(), "ratio")
	b.ReportMetric(tPlain.Seconds()/tFloor.Seconds(), "floor-ratio")
	b.ReportMetric(tFloor.Seconds()/tRec.Seconds(), "rec/floor")
}

// BenchmarkReplay compares Replay of a log of 256 writes of 64 KiB (a Sync
// every 16) with a plain sequential copy of the same number of bytes from
// the log device to the target, in the same run, and reports the ratio
// (replay / copy throughput). The main baseline copies in 1 MiB chunks; a
// second one is io.Copy (32 KiB chunks).
func BenchmarkReplay(b *testing.B) {
	for _, k := range devKinds {
		b.Run(k.name, func(b *testing.B) {
			const n = 256
			dev := newMemDev(benchDevSize)
			logDev := k.open(b, "log", n*(benchWrite+512)+(1<<20))
			defer logDev.Close()
			rec, err := New(dev, logDev, Options{})
			if err != nil {
				b.Fatal(err)
			}
			p := make([]byte, benchWrite)
			for i := 0; i < n; i++ {
				p[0] = byte(i)
				if _, err := rec.WriteAt(p, int64(i*benchWrite)%benchDevSize); err != nil {
					b.Fatal(err)
				}
				if i%benchPerSync == benchPerSync-1 {
					if err := rec.Sync(); err != nil {
						b.Fatal(err)
					}
				}
			}
			if err := rec.Close(); err != nil {
				b.Fatal(err)
			}
			l, err := Open(logDev)
			if err != nil {
				b.Fatal(err)
			}
			target := k.open(b, "target", benchDevSize)
			defer target.Close()
			buf := make([]byte, 1<<20)
			var tCopy, tReplay, tIOCopy time.Duration
			ioCopyOnce := func() {
				src := io.NewSectionReader(logDev, 512, n*benchWrite)
				if _, err := io.Copy(io.NewOffsetWriter(target, 0), src); err != nil {
					b.Fatal(err)
				}
				if err := target.Sync(); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(n * benchWrite)
			b.ResetTimer()
			copyOnce := func() {
				for off := int64(0); off < n*benchWrite; off += int64(len(buf)) {
					if _, err := logDev.ReadAt(buf, 512+off); err != nil {
						b.Fatal(err)
					}
					if _, err := target.WriteAt(buf, off%benchDevSize); err != nil {
						b.Fatal(err)
					}
				}
				if err := target.Sync(); err != nil {
					b.Fatal(err)
				}
			}
			replayOnce := func() {
				if err := Replay(l, target, ReplayOptions{}); err != nil {
					b.Fatal(err)
				}
			}
			for i := 0; i < b.N; i++ {
				// Alternate which goes first, so neither always runs on a
				// cache the other warmed.
				if i%2 == 0 {
					t0 := time.Now()
					copyOnce()
					t1 := time.Now()
					replayOnce()
					tCopy += t1.Sub(t0)
					tReplay += time.Since(t1)
				} else {
					t0 := time.Now()
					replayOnce()
					t1 := time.Now()
					copyOnce()
					tReplay += t1.Sub(t0)
					tCopy += time.Since(t1)
				}
				t2 := time.Now()
				ioCopyOnce()
				tIOCopy += time.Since(t2)
			}
			mb := float64(b.N) * n * benchWrite / 1e6
			b.ReportMetric(mb/tCopy.Seconds(), "copy-MB/s")
			b.ReportMetric(mb/tReplay.Seconds(), "replay-MB/s")
			b.ReportMetric(tCopy.Seconds()/tReplay.Seconds(), "ratio")
			b.ReportMetric(tIOCopy.Seconds()/tReplay.Seconds(), "ratio-vs-io.Copy")
		})
	}
}
