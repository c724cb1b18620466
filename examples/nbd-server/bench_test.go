package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dmlog/dmlog/internal/fixture"
)

// BenchmarkVsQemuNBD measures nbd-server (-file, -mirror with two file
// legs, -record) against qemu-nbd serving the same kind of file, with the
// same client: qemu-img bench at queue depth 16 for throughput, and a
// pipelined Go client (depth 16, 4 KiB random writes) for p50/p99
// latency. It runs only with DMLOG_BENCH_NBD=1 (it writes a few GiB):
//
//	DMLOG_BENCH_NBD=1 go test -run '^$' -bench VsQemuNBD -benchtime 1x ./examples/nbd-server
func BenchmarkVsQemuNBD(b *testing.B) {
	if os.Getenv("DMLOG_BENCH_NBD") == "" {
		b.Skip("SKIP: set DMLOG_BENCH_NBD=1 to run the comparison with qemu-nbd")
	}
	qemuImg := fixture.Tool(b, "qemu-img", "qemu-utils")
	qemuNBD := fixture.Tool(b, "qemu-nbd", "qemu-utils")
	const size = 256 << 20
	type workload = struct {
		name string
		args []string
	}
	workloads := []workload{
		// 4 KiB writes with a stride of 1 MiB + 4 KiB, wrapping around
		// the image: scattered offsets qemu-img bench can issue.
		{"4k-rand-write", []string{"-w", "-s", "4k", "-S", "1052672", "-c", "40000"}},
		{"1M-seq-write", []string{"-w", "-s", "1M", "-c", "512"}},
		{"1M-seq-read", []string{"-s", "1M", "-c", "512"}},
	}
	if w := os.Getenv("DMLOG_BENCH_WORKLOAD"); w != "" {
		workloads = slices.DeleteFunc(workloads, func(x workload) bool { return x.name != w })
	}
	servers := []string{"qemu-nbd", "file", "mirror", "record"}
	if s := os.Getenv("DMLOG_BENCH_SERVERS"); s != "" {
		servers = strings.Split(s, ",") // e.g. qemu-nbd,mirror; the first is the baseline
	}
	for i := 0; i < b.N; i++ {
		mbps := map[string]map[string]float64{}
		lat := map[string][2]time.Duration{}
		for _, srv := range servers {
			dir := b.TempDir()
			sock := filepath.Join(dir, "s")
			stop := startBenchServer(b, srv, qemuNBD, dir, sock, size)
			uri := "nbd+unix:///?socket=" + sock
			mbps[srv] = map[string]float64{}
			for _, w := range workloads {
				best := 0.0
				for rep := 0; rep < 3; rep++ {
					// Every run starts with no dirty page cache left by
					// the one before (another server's writeback would
					// slow its fsyncs): the runs compare servers, not
					// their order.
					syscall.Sync()
					args := append([]string{"bench", "-f", "raw", "-t", "writeback", "-d", "16"}, w.args...)
					secs := qemuImgBench(b, qemuImg, append(args, uri)...)
					var bytes float64
					n, _ := strconv.Atoi(w.args[len(w.args)-1])
					if strings.HasPrefix(w.name, "4k") {
						bytes = float64(n) * 4096
					} else {
						bytes = float64(n) * (1 << 20)
					}
					best = max(best, bytes/secs/(1<<20))
				}
				mbps[srv][w.name] = best
			}
			p50, p99 := latency(b, sock, size, 20000)
			lat[srv] = [2]time.Duration{p50, p99}
			stop()
		}
		for _, w := range workloads {
			base := mbps[servers[0]][w.name]
			for _, srv := range servers {
				b.Logf("%-14s %-9s %8.1f MiB/s  %.2fx qemu-nbd", w.name, srv, mbps[srv][w.name], mbps[srv][w.name]/base)
				if srv != servers[0] {
					b.ReportMetric(mbps[srv][w.name]/base, srv+"/qemu-nbd-"+w.name)
				}
			}
		}
		for _, srv := range servers {
			b.Logf("4k-rand-write latency, depth 16, Go client: %-9s p50 %v  p99 %v", srv, lat[srv][0], lat[srv][1])
			b.ReportMetric(float64(lat[srv][0].Microseconds()), srv+"-p50-us")
			b.ReportMetric(float64(lat[srv][1].Microseconds()), srv+"-p99-us")
		}
	}
}

// startBenchServer starts one server on sock over fresh files in dir and
// returns its stop function.
func startBenchServer(b *testing.B, kind, qemuNBD, dir, sock string, size int64) func() {
	img := filepath.Join(dir, "img")
	if kind == "qemu-nbd" {
		f, err := os.Create(img)
		if err != nil {
			b.Fatal(err)
		}
		f.Truncate(size)
		f.Close()
		cmd := exec.Command(qemuNBD, "-f", "raw", "-k", sock, "-t", "--cache=writeback", "--aio=threads", "-e", "4", img)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			if c, err := net.Dial("unix", sock); err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				b.Fatal("qemu-nbd did not start")
			}
			time.Sleep(10 * time.Millisecond) // polling for the socket qemu-nbd creates
		}
		return func() { cmd.Process.Kill(); cmd.Wait() }
	}
	args := []string{"-listen", "unix:" + sock, "-size", strconv.FormatInt(size, 10)}
	switch kind {
	case "file":
		args = append(args, "-file", img)
	case "mirror":
		args = append(args, "-mirror", img+","+filepath.Join(dir, "img2"), "-log", filepath.Join(dir, "log"))
		if r := os.Getenv("DMLOG_BENCH_REGION"); r != "" {
			args = append(args, "-region", r)
		}
	case "record":
		args = append(args, "-record", img, "-log", filepath.Join(dir, "log"))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	up := make(chan struct{})
	var out syncBuf
	go func() { done <- run(ctx, args, &out, func(net.Addr, net.Addr) { close(up) }) }()
	select {
	case <-up:
	case err := <-done:
		b.Fatalf("nbd-server %v: %v\n%s", args, err, out.String())
	}
	return func() {
		cancel()
		if err := <-done; err != nil {
			b.Errorf("nbd-server %s: %v", kind, err)
		}
	}
}

var benchTime = regexp.MustCompile(`Run completed in ([0-9.]+) seconds`)

func qemuImgBench(b *testing.B, qemuImg string, args ...string) float64 {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, qemuImg, args...).CombinedOutput()
	if err != nil {
		b.Fatalf("qemu-img %v: %v\n%s", args, err, out)
	}
	m := benchTime.FindSubmatch(out)
	if m == nil {
		b.Fatalf("qemu-img bench output: %s", out)
	}
	secs, _ := strconv.ParseFloat(string(m[1]), 64)
	return max(secs, 1e-6)
}

// latency runs n random 4 KiB writes (seed 1) at depth 16 with a minimal
// pipelined client and returns the p50 and p99 request latency.
func latency(b *testing.B, sock string, size int64, n int) (p50, p99 time.Duration) {
	c, err := net.Dial("unix", sock)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	r := bufio.NewReader(c)
	// Fixed newstyle, NBD_OPT_EXPORT_NAME "" with NO_ZEROES.
	hello := make([]byte, 18)
	if _, err := io.ReadFull(r, hello); err != nil {
		b.Fatal(err)
	}
	msg := binary.BigEndian.AppendUint32(nil, 3)
	msg = binary.BigEndian.AppendUint64(msg, 0x49484156454f5054)
	msg = binary.BigEndian.AppendUint32(msg, 1)
	msg = binary.BigEndian.AppendUint32(msg, 0)
	if _, err := c.Write(msg); err != nil {
		b.Fatal(err)
	}
	if _, err := io.ReadFull(r, make([]byte, 10)); err != nil {
		b.Fatal(err)
	}
	const depth = 16
	sent := make([]time.Time, n)
	lats := make([]time.Duration, 0, n)
	var mu sync.Mutex
	slots := make(chan struct{}, depth)
	errc := make(chan error, 1)
	go func() {
		var h [16]byte
		for i := 0; i < n; i++ {
			if _, err := io.ReadFull(r, h[:]); err != nil {
				errc <- err
				return
			}
			if e := binary.BigEndian.Uint32(h[4:]); e != 0 {
				errc <- fmt.Errorf("write error %d", e)
				return
			}
			hd := binary.BigEndian.Uint64(h[8:])
			mu.Lock()
			lats = append(lats, time.Since(sent[hd]))
			mu.Unlock()
			<-slots
		}
		errc <- nil
	}()
	rng := rand.New(rand.NewPCG(1, 2))
	w := bufio.NewWriter(c)
	req := make([]byte, 28+4096)
	binary.BigEndian.PutUint32(req, 0x25609513)
	binary.BigEndian.PutUint16(req[6:], 1) // NBD_CMD_WRITE
	binary.BigEndian.PutUint32(req[24:], 4096)
	for i := 0; i < n; i++ {
		select {
		case slots <- struct{}{}:
		case err := <-errc:
			b.Fatalf("latency client: %v", err)
		}
		binary.BigEndian.PutUint64(req[8:], uint64(i))
		binary.BigEndian.PutUint64(req[16:], uint64(rng.Int64N(size/4096))*4096)
		mu.Lock()
		sent[i] = time.Now()
		mu.Unlock()
		w.Write(req)
		if len(slots) == depth || i == n-1 {
			w.Flush()
		}
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := <-errc; err != nil {
		b.Fatalf("latency client: %v", err)
	}
	slices.Sort(lats)
	return lats[len(lats)/2], lats[len(lats)*99/100]
}
