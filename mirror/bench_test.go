package mirror

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dmlog/dmlog/dirtylog"
)

// Benchmarks compare the mirror with a plain baseline measured in the same
// run on the same devices; the x_raw metric is mirror throughput divided
// by baseline throughput (1.0 = no overhead). See BENCHMARKS.md.

func benchFiles(b *testing.B, n int, size int64) []*os.File {
	b.Helper()
	dir := b.TempDir()
	var fs []*os.File
	for i := range n {
		f, err := os.OpenFile(filepath.Join(dir, "leg"+string(rune('0'+i))), os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			b.Fatal(err)
		}
		if err := f.Truncate(size); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { f.Close() })
		buf := make([]byte, 1<<20)
		for o := int64(0); o < size; o += int64(len(buf)) {
			if _, err := f.WriteAt(buf[:min(int64(len(buf)), size-o)], o); err != nil {
				b.Fatal(err)
			}
		}
		fs = append(fs, f)
	}
	return fs
}

// runConc runs n operations on conc goroutines and returns the time taken.
func runConc(n, conc int, op func(rng *rand.Rand)) time.Duration {
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for g := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 99))
			for next.Add(1) <= int64(n) {
				op(rng)
			}
		}()
	}
	wg.Wait()
	return time.Since(start)
}

// interleave runs n operations of the baseline and of the mirror in
// alternating rounds (so both see the same machine noise) and returns the
// median over rounds of baseline time / mirror time: the mirror's
// throughput as a fraction of the baseline's. The median keeps a burst of
// load from other processes in one round from deciding the figure.
func interleave(n, conc int, raw, mir func(rng *rand.Rand)) float64 {
	const rounds = 15
	var ratios []float64
	for i := range rounds {
		k := max(n/rounds+boolInt(i < n%rounds), 1)
		var rt, mt time.Duration
		if i%2 == 0 {
			rt = runConc(k, conc, raw)
			mt = runConc(k, conc, mir)
		} else {
			mt = runConc(k, conc, mir)
			rt = runConc(k, conc, raw)
		}
		ratios = append(ratios, rt.Seconds()/mt.Seconds())
	}
	return median(ratios)
}

func median(v []float64) float64 {
	sort.Float64s(v)
	return v[len(v)/2]
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// rawParallelWrite writes p to every leg in parallel, as the mirror does,
// without a log.
func rawParallelWrite(legs []Leg, p []byte, off int64) {
	var wg sync.WaitGroup
	for _, l := range legs[1:] {
		wg.Add(1)
		go func() { defer wg.Done(); _, _ = l.WriteAt(p, off) }()
	}
	_, _ = legs[0].WriteAt(p, off)
	wg.Wait()
}

// benchWrites compares 4 KiB random writes by conc writers to a mirror
// over legs with a core log (regions of 512 KiB) with the same writes
// issued to the legs in parallel with no log.
func benchWrites(b *testing.B, legs []Leg, size int64, conc int) {
	const bs = 4096
	log, err := dirtylog.NewCore(dirtylog.Options{RegionSize: 512 << 10, DeviceSize: size, Sync: dirtylog.NoSync})
	if err != nil {
		b.Fatal(err)
	}
	m, err := New(legs, log, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	p := make([]byte, bs)
	off := func(rng *rand.Rand) int64 { return rng.Int64N(size/bs) * bs }
	b.SetBytes(bs)
	b.ResetTimer()
	ratio := interleave(b.N, conc, func(rng *rand.Rand) { rawParallelWrite(legs, p, off(rng)) },
		func(rng *rand.Rand) {
			if _, err := m.WriteAt(p, off(rng)); err != nil {
				b.Error(err)
			}
		})
	b.StopTimer()
	b.ReportMetric(ratio, "x_raw")
	// Allocations of the mirror's write alone (the baseline's goroutine
	// closure is not counted), after the rounds above warmed it up.
	allocs := testing.AllocsPerRun(2000, func() {
		if _, err := m.WriteAt(p, off(rng0)); err != nil {
			b.Error(err)
		}
	})
	b.ReportMetric(allocs, "allocs/write")
	var ns int64
	for _, l := range m.cfg.Load().legs {
		ns = max(ns, l.writeNanos.Load())
	}
	b.ReportMetric(float64(ns), "leg_write_ns") // inline below inlineLegNanos
}

// rng0 drives the allocation count's offsets.
var rng0 = rand.New(rand.NewPCG(1, 2))

// BenchmarkWrite: 4 KiB random writes to a two-leg mirror on files with a
// core log versus the same writes issued to both files in parallel with
// no log.
func BenchmarkWrite(b *testing.B) {
	const size = 64 << 20
	for _, conc := range []int{1, 16} {
		b.Run("writers="+itoa(conc), func(b *testing.B) {
			files := benchFiles(b, 2, size)
			benchWrites(b, []Leg{files[0], files[1]}, size, conc)
		})
	}
}

// memLeg is a plain in-memory leg (no history, no lock: the benchmarks
// write random 4 KiB blocks, and a torn block would not matter), so the
// write benchmark can show the mirror's CPU overhead without disk noise.
type memLeg []byte

func (l memLeg) ReadAt(p []byte, off int64) (int, error)  { return copy(p, l[off:]), nil }
func (l memLeg) WriteAt(p []byte, off int64) (int, error) { return copy(l[off:], p), nil }

// BenchmarkWriteMem is BenchmarkWrite on in-memory legs. The mirror
// writes such fast legs one after the other on the writer's goroutine
// (inlineLegNanos); the parallel=forced runs turn that off, to show the
// cost of the write path itself against the same parallel leg writes.
func BenchmarkWriteMem(b *testing.B) {
	const size = 64 << 20
	for _, bc := range []struct {
		name   string
		conc   int
		inline bool
	}{{"writers=1", 1, true}, {"writers=16", 16, true},
		{"writers=1/parallel=forced", 1, false}, {"writers=16/parallel=forced", 16, false}} {
		conc := bc.conc
		b.Run(bc.name, func(b *testing.B) {
			inlineFastLegs = bc.inline
			defer func() { inlineFastLegs = true }()
			legs := []Leg{make(memLeg, size), make(memLeg, size)}
			for _, l := range legs {
				for i := 0; i < size; i += 4096 {
					l.(memLeg)[i] = 1 // fault the pages in before timing
				}
			}
			benchWrites(b, legs, size, conc)
		})
	}
}

// BenchmarkLogFlushesPerWrite: 16 writers doing 4 KiB random writes to a
// mirror on files with a disk log on a file; reports log flushes per write
// (group commit and deferred clears keep it well below 1).
func BenchmarkLogFlushesPerWrite(b *testing.B) {
	const size, bs = 256 << 20, 4096
	for _, cd := range []struct {
		name string
		d    time.Duration
	}{{"clear=100ms", 0}, {"clear=immediate", -1}} {
		b.Run(cd.name, func(b *testing.B) {
			files := benchFiles(b, 3, size)
			m, err := OpenDisk([]Leg{files[0], files[1]}, files[2],
				dirtylog.Options{RegionSize: 512 << 10, DeviceSize: size, Sync: dirtylog.NoSync},
				Options{ClearDelay: cd.d})
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			p := make([]byte, bs)
			b.ResetTimer()
			runConc(b.N, 16, func(rng *rand.Rand) {
				if _, err := m.WriteAt(p, rng.Int64N(size/bs)*bs); err != nil {
					b.Error(err)
				}
			})
			b.StopTimer()
			s := m.Stats()
			b.ReportMetric(float64(s.LogFlushes)/float64(s.Writes), "flushes/write")
		})
	}
}

// BenchmarkResync: resync of a whole two-leg mirror (every region out of
// sync) versus a raw sequential copy of the same bytes, leg 0 to leg 1,
// in 1 MiB chunks.
func BenchmarkResync(b *testing.B) {
	const size = 32 << 20
	files := benchFiles(b, 2, size)
	buf := make([]byte, 1<<20)
	var ratios []float64
	b.SetBytes(size)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		for o := int64(0); o < size; o += int64(len(buf)) {
			if _, err := files[0].ReadAt(buf, o); err != nil {
				b.Fatal(err)
			}
			if _, err := files[1].WriteAt(buf, o); err != nil {
				b.Fatal(err)
			}
		}
		raw := time.Since(start)

		log, err := dirtylog.NewCore(dirtylog.Options{RegionSize: 512 << 10, DeviceSize: size})
		if err != nil {
			b.Fatal(err)
		}
		m, err := New([]Leg{files[0], files[1]}, log, Options{NoResync: true})
		if err != nil {
			b.Fatal(err)
		}
		start = time.Now()
		if err := m.Resync(context.Background()); err != nil {
			b.Fatal(err)
		}
		ratios = append(ratios, raw.Seconds()/time.Since(start).Seconds())
		_ = m.Close()
	}
	b.ReportMetric(median(ratios), "x_raw")
}

// BenchmarkRead: 16 readers of 64 KiB random blocks from a two-leg
// in-sync mirror (round-robin) versus the same reads from one leg.
func BenchmarkRead(b *testing.B) {
	const size, bs = 64 << 20, 64 << 10
	files := benchFiles(b, 2, size)
	log, err := dirtylog.NewCore(dirtylog.Options{RegionSize: 512 << 10, DeviceSize: size, Sync: dirtylog.NoSync})
	if err != nil {
		b.Fatal(err)
	}
	m, err := New([]Leg{files[0], files[1]}, log, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	var pool sync.Pool
	get := func() []byte {
		if p, ok := pool.Get().(*[]byte); ok {
			return *p
		}
		return make([]byte, bs)
	}
	put := func(p []byte) { pool.Put(&p) }
	off := func(rng *rand.Rand) int64 { return rng.Int64N(size/bs) * bs }
	b.SetBytes(bs)
	b.ResetTimer()
	ratio := interleave(b.N, 16, func(rng *rand.Rand) {
		p := get()
		_, _ = files[0].ReadAt(p, off(rng))
		put(p)
	}, func(rng *rand.Rand) {
		p := get()
		if _, err := m.ReadAt(p, off(rng)); err != nil {
			b.Error(err)
		}
		put(p)
	})
	b.StopTimer()
	b.ReportMetric(ratio, "x_raw")
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}
