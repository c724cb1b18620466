package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/dmlog/dmlog/logwrites"
)

// discardDev is a data device that keeps nothing.
type discardDev struct{}

func (discardDev) ReadAt(p []byte, off int64) (int, error)  { clear(p); return len(p), nil }
func (discardDev) WriteAt(p []byte, off int64) (int, error) { return len(p), nil }

// BenchmarkFindVerbose runs the command's --find of the last entry of a
// log of 4,000 writes (a flush every 16; of 4 KiB: headers read many at a
// time; of 64 KiB: one read per header) with and without -vv, printing to
// /dev/null through a real file descriptor, in the same run, and reports
// the ratio (-vv / plain; issue 14 asks for at most 1.10).
func BenchmarkFindVerbose(b *testing.B) {
	for _, size := range []int{4 << 10, 64 << 10} {
		b.Run(fmt.Sprintf("entry=%dKiB", size>>10), func(b *testing.B) { benchFindVerbose(b, size) })
	}
}

// benchLog writes a log of 4,000 writes of size bytes (a flush every 16)
// at 1,024 slots of a device of 1,024 × size bytes into dir.
func benchLog(b *testing.B, dir string, size int) string {
	logPath := filepath.Join(dir, "log")
	lf, err := os.Create(logPath)
	if err != nil {
		b.Fatal(err)
	}
	rec, err := logwrites.New(discardDev{}, lf, logwrites.Options{})
	if err != nil {
		b.Fatal(err)
	}
	p := make([]byte, size)
	for i := range 4000 {
		p[0] = byte(i)
		if _, err := rec.WriteAt(p, int64(i%1024)*int64(size)); err != nil {
			b.Fatal(err)
		}
		if i%16 == 15 {
			if err := rec.Sync(); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := rec.Close(); err != nil {
		b.Fatal(err)
	}
	lf.Close()
	return logPath
}

func benchFindVerbose(b *testing.B, size int) {
	logPath := benchLog(b, b.TempDir(), size)
	abVerbose(b, []string{"--log", logPath, "--find", "--end-mark", logwrites.EndMark}, "-vv", "find")
}

// BenchmarkReplayVerbose runs the command's full replay of a log of 4,000
// writes of 64 KiB onto a 64 MiB file with and without -v (lines to
// /dev/null), in the same run, and reports the ratio (-v / plain): -v
// keeps the replay last-writer-wins, so it costs only its lines.
func BenchmarkReplayVerbose(b *testing.B) {
	const size = 64 << 10
	dir := b.TempDir()
	logPath := benchLog(b, dir, size)
	dev := filepath.Join(dir, "dev")
	if err := os.WriteFile(dev, make([]byte, 1024*size), 0o644); err != nil {
		b.Fatal(err)
	}
	abVerbose(b, []string{"--log", logPath, "--replay", dev}, "-v", "replay")
}

// abVerbose runs the command with args, and with args plus the verbose
// flag, b.N times each, alternating which goes first, output to
// /dev/null through a real descriptor; it reports both times per run
// (what-ms, what-v-ms or what-vv-ms) and their ratio (verbose / plain).
func abVerbose(b *testing.B, args []string, verbose, what string) {
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer null.Close()
	var tPlain, tVerbose time.Duration
	one := func(d *time.Duration, extra ...string) {
		t0 := time.Now()
		if code := run(append(slices.Clip(args), extra...), null, io.Discard); code != 0 {
			b.Fatalf("exit %d", code)
		}
		*d += time.Since(t0)
	}
	for i := 0; i < b.N; i++ {
		if i%2 == 0 {
			one(&tPlain)
			one(&tVerbose, verbose)
		} else {
			one(&tVerbose, verbose)
			one(&tPlain)
		}
	}
	v := verbose[1:] // "v" or "vv"
	b.ReportMetric(tPlain.Seconds()/float64(b.N)*1e3, what+"-ms")
	b.ReportMetric(tVerbose.Seconds()/float64(b.N)*1e3, what+"-"+v+"-ms")
	b.ReportMetric(tVerbose.Seconds()/tPlain.Seconds(), "ratio-"+v+"/plain")
}
