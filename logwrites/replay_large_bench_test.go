package logwrites

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// largeLog describes a generated log: entries writes of entrySize bytes at
// random entry-aligned offsets of a device of devSize bytes, an empty
// flush after every 16 writes, the mark "middle" halfway and EndMark last.
type largeLog struct {
	entries   int
	entrySize int64
	devSize   int64
}

// write writes the log to w (sector size 512) with a fixed seed.
func (g largeLog) write(w io.Writer) error {
	const s = 512
	bw := bufio.NewWriterSize(w, 1<<20)
	rng := rand.New(rand.NewPCG(14, 2))
	hdr := make([]byte, s)
	data := make([]byte, g.entrySize)
	var n uint64
	entry := func(sector, nr uint64, f Flags, mark string, p []byte) {
		clear(hdr)
		putHeader(hdr, sector, nr, f, mark)
		bw.Write(hdr)
		bw.Write(p)
		n++
	}
	super := make([]byte, s)
	bw.Write(super) // rewritten at the end
	slots := uint64(g.devSize / g.entrySize)
	for i := range g.entries {
		if i == g.entries/2 {
			entry(0, 0, FlagMark, "middle", nil)
		}
		for k := range data {
			if k%4096 == 0 {
				data[k] = byte(i)
				data[k+1] = byte(i >> 8)
			}
		}
		sector := rng.Uint64N(slots) * uint64(g.entrySize/s)
		entry(sector, uint64(g.entrySize/s), 0, "", data)
		if i%16 == 15 {
			entry(0, 0, FlagFlush, "", nil)
		}
	}
	entry(0, 0, FlagMark, EndMark, nil)
	if err := bw.Flush(); err != nil {
		return err
	}
	putSuper(super, n, s)
	if wa, ok := w.(io.WriterAt); ok {
		_, err := wa.WriteAt(super, 0)
		return err
	}
	return fmt.Errorf("generator needs an io.WriterAt")
}

// createLargeLog writes the log g into dir and opens it.
func createLargeLog(b *testing.B, dir string, g largeLog) (*os.File, *Log) {
	b.Helper()
	f, err := os.Create(filepath.Join(dir, "log"))
	if err != nil {
		b.Fatal(err)
	}
	if err := g.write(f); err != nil {
		b.Fatal(err)
	}
	l, err := Open(f)
	if err != nil {
		b.Fatal(err)
	}
	return f, l
}

// largeLogShape is the benchmark log: by default 256 MiB of 512 KiB
// writes (500 entries) onto 32 MiB; DMLOG_LONG=1 gives the size of issue
// 14's measurements, about 2 GB of 4,000 writes onto 256 MiB. Both
// overwrite the device eight times.
func largeLogShape() largeLog {
	if os.Getenv("DMLOG_LONG") == "1" {
		return largeLog{entries: 4000, entrySize: 512 << 10, devSize: 256 << 20}
	}
	return largeLog{entries: 500, entrySize: 512 << 10, devSize: 32 << 20}
}

// BenchmarkReplayLarge replays a large generated log (see largeLogShape)
// onto a file (in the page cache: no fsync; and once more with the fsync
// Replay does on a target that has Sync), with the last-writer-wins path and with the sequential one
// in the same run (alternating which goes first), and reports both times
// and their ratio (sequential / last-writer-wins); the same for a replay
// to the mark in the middle; and Find of the last entry (a header-only
// walk of the whole log) in entries/s, against a plain loop reading each
// header sector at its known offset (ratio find/header-reads).
func BenchmarkReplayLarge(b *testing.B) {
	g := largeLogShape()
	dir := b.TempDir()
	logFile, l := createLargeLog(b, dir, g)
	defer logFile.Close()
	target, err := os.Create(filepath.Join(dir, "target"))
	if err != nil {
		b.Fatal(err)
	}
	defer target.Close()
	if err := target.Truncate(g.devSize); err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name, end string
		target    io.WriterAt
	}{
		{"full", "", pageCache{target}},
		{"end-mark-middle", "middle", pageCache{target}},
		{"full-fsync", "", target},
	} {
		name, end, target := c.name, c.end, c.target
		b.Run(name, func(b *testing.B) {
			var tLWW, tSeq time.Duration
			run := func(seq bool, d *time.Duration) {
				t0 := time.Now()
				if err := Replay(l, target, ReplayOptions{EndMark: end, Sequential: seq}); err != nil {
					b.Fatal(err)
				}
				*d += time.Since(t0)
			}
			for i := 0; i < b.N; i++ {
				if i%2 == 0 {
					run(false, &tLWW)
					run(true, &tSeq)
				} else {
					run(true, &tSeq)
					run(false, &tLWW)
				}
			}
			b.ReportMetric(tLWW.Seconds()/float64(b.N)*1e3, "lww-ms")
			b.ReportMetric(tSeq.Seconds()/float64(b.N)*1e3, "seq-ms")
			b.ReportMetric(tSeq.Seconds()/tLWW.Seconds(), "ratio")
		})
	}
	b.Run("find", func(b *testing.B) {
		var offs []int64
		for e, err := range l.Entries() {
			if err != nil {
				b.Fatal(err)
			}
			offs = append(offs, int64(e.Block)*512)
		}
		hdr := make([]byte, 512)
		var tFind, tScan time.Duration
		find := func() {
			t0 := time.Now()
			e, err := Find(l, ReplayOptions{EndMark: EndMark})
			if err != nil || e.Index != l.NumEntries()-1 {
				b.Fatal(e, err)
			}
			tFind += time.Since(t0)
		}
		scan := func() {
			t0 := time.Now()
			for _, off := range offs {
				if _, err := logFile.ReadAt(hdr, off); err != nil {
					b.Fatal(err)
				}
			}
			tScan += time.Since(t0)
		}
		for i := 0; i < b.N; i++ {
			if i%2 == 0 {
				find()
				scan()
			} else {
				scan()
				find()
			}
		}
		n := float64(b.N) * float64(l.NumEntries())
		b.ReportMetric(n/tFind.Seconds(), "find-entries/s")
		b.ReportMetric(n/tScan.Seconds(), "header-reads-entries/s")
		b.ReportMetric(tFind.Seconds()/tScan.Seconds(), "ratio-find/header-reads")
	})
}

// pageCache is a file target without its Sync method: a replay then ends
// in the page cache, as replay-log's does (it does not fsync), so the
// figures are the replay's own and not the disk's.
type pageCache struct{ f *os.File }

func (p pageCache) WriteAt(b []byte, off int64) (int, error) { return p.f.WriteAt(b, off) }

// syntheticLog is a log of n writes of 8 sectors (4 KiB) each at
// pseudo-random 4 KiB slots of a device of devSize bytes, generated on the
// fly by ReadAt (no storage), for measuring the memory of a replay's plan
// of a million entries.
type syntheticLog struct {
	n       uint64
	devSize int64
}

func (g syntheticLog) Size() int64 { return int64(1+9*g.n) * 512 }

func (g syntheticLog) slot(i uint64) uint64 {
	return (i * 0x9e3779b97f4a7c15 >> 20) % uint64(g.devSize/4096)
}

func (g syntheticLog) ReadAt(p []byte, off int64) (int, error) {
	total := g.Size()
	if off >= total {
		return 0, io.EOF
	}
	n := len(p)
	if off+int64(n) > total {
		n = int(total - off)
	}
	for done := 0; done < n; {
		block := (off + int64(done)) / 512
		in := int((off + int64(done)) % 512)
		m := min(512-in, n-done)
		var blk [512]byte
		switch {
		case block == 0:
			putSuper(blk[:], g.n, 512)
		case (block-1)%9 == 0:
			i := uint64(block-1) / 9
			putHeader(blk[:], g.slot(i)*8, 8, 0, "")
		default:
			blk[0] = byte(block) // data: cheap to generate
		}
		copy(p[done:done+m], blk[in:in+m])
		done += m
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// nullTarget takes writes and keeps nothing.
type nullTarget struct{}

func (nullTarget) WriteAt(p []byte, off int64) (int, error) { return len(p), nil }

// BenchmarkReplayPlanMemory replays synthetic logs of 4,000 and 1,000,000
// 4 KiB writes onto 256 MiB (to a target that keeps nothing) with the
// last-writer-wins path, and reports the extents of the plan, the heap in
// use after planning (sampled at the end of the replay), and the process's
// peak RSS (run each size in its own process for a per-size figure:
// -bench 'ReplayPlanMemory/entries=1000000').
func BenchmarkReplayPlanMemory(b *testing.B) {
	for _, n := range []uint64{4000, 1000000} {
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			g := syntheticLog{n: n, devSize: 256 << 20}
			l, err := Open(g)
			if err != nil {
				b.Fatal(err)
			}
			for i := 0; i < b.N; i++ {
				rp := replayer{log: l, target: nullTarget{}, s: 512}
				var m extentMap
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				for e, err := range l.Entries() {
					if err != nil {
						b.Fatal(err)
					}
					rp.plan(&m, e, 512)
				}
				runtime.ReadMemStats(&after)
				b.ReportMetric(float64(m.n), "extents")
				b.ReportMetric(float64(m.bytes())/1e6, "map-MB")
				b.ReportMetric(float64(after.HeapAlloc-min(before.HeapAlloc, after.HeapAlloc))/1e6, "plan-heap-MB")
				if err := rp.copyExtents(&m, lwwInFlight); err != nil {
					b.Fatal(err)
				}
			}
			if mb, ok := peakRSS(); ok {
				b.ReportMetric(mb, "peak-RSS-MB")
			}
		})
	}
}

// peakRSS returns the process's peak resident set in MB: VmHWM of
// /proc/self/status where there is one, which starts afresh at exec (the
// rusage maximum does not: under go test it keeps the go command's peak,
// about 30 MB, from before the exec), else the rusage maximum.
func peakRSS() (float64, bool) {
	if st, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(st), "\n") {
			if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
				if kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64); err == nil {
					return kb / 1024, true
				}
			}
		}
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, false
	}
	return float64(ru.Maxrss) / 1024, true
}
