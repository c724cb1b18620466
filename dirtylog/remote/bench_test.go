//go:build unix

package remote

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dmlog/dmlog/dirtylog"
)

const benchMarks = 32

// flushRound marks 32 regions, flushes, and clears them (the clears ride
// with the next flush), as a mirror's group commit does.
func flushRound(ctx context.Context, l dirtylog.Log, base dirtylog.Region, i int) error {
	r0 := base + dirtylog.Region(i%8)*benchMarks
	for k := range benchMarks {
		l.MarkRegion(r0 + dirtylog.Region(k))
	}
	err := l.Flush(ctx)
	for k := range benchMarks {
		l.ClearRegion(r0 + dirtylog.Region(k))
	}
	return err
}

// measure runs n rounds on l and returns the sorted latencies.
func measure(b *testing.B, l dirtylog.Log, n int) []time.Duration {
	ctx := context.Background()
	lat := make([]time.Duration, 0, n)
	for i := range n {
		t0 := time.Now()
		if err := flushRound(ctx, l, 0, i); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	slices.Sort(lat)
	return lat
}

func pct(lat []time.Duration, p float64) float64 {
	return float64(lat[int(float64(len(lat)-1)*p)].Nanoseconds()) / 1e3
}

func benchCore(b *testing.B) dirtylog.Log {
	c, err := dirtylog.NewCore(dirtylog.Options{RegionSize: tRegion, DeviceSize: 1024 * tRegion, Sync: dirtylog.NoSync})
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// BenchmarkFlushRoundTrip: one node, 32 marks per flush, over a Unix
// socket to a clustered-core log; beside the same rounds on an in-process
// core log. Reports p50/p99 in µs and the p50 ratio to the baseline.
func BenchmarkFlushRoundTrip(b *testing.B) {
	for _, integrated := range []bool{false, true} {
		b.Run(fmt.Sprint("integrated=", integrated), func(b *testing.B) {
			ts := startServer(b, ServerOptions{})
			o := ClientOptions{UUID: "bench", Node: 1, DeviceSize: 1024 * tRegion,
				Args: []string{"clustered-core", tRS, "nosync"}, IntegratedFlush: integrated}
			c := ts.dial(b, o)
			defer c.Close()
			base := benchCore(b)
			measure(b, c, 200) // warm up
			b.ResetTimer()
			lat := measure(b, c, b.N)
			b.StopTimer()
			baseLat := measure(b, base, max(b.N, 1000))
			p50, p99 := pct(lat, 0.5), pct(lat, 0.99)
			bp50 := pct(baseLat, 0.5)
			b.ReportMetric(p50, "p50-µs")
			b.ReportMetric(p99, "p99-µs")
			b.ReportMetric(bp50, "baseline-p50-µs")
			b.ReportMetric(p50/bp50, "x-baseline-p50")
		})
	}
}

// BenchmarkFlushRoundTripLargeDevice: as BenchmarkFlushRoundTrip
// (separate MARK_REGION), on a log of 4 Mi regions (a 256 GiB device in
// 64 KiB regions) beside the same rounds on a 1024-region remote log in
// the same run: the client's pending sets cost in proportion to what is
// pending, not to the device, so the ratio stays near 1.
func BenchmarkFlushRoundTripLargeDevice(b *testing.B) {
	const large = 4 << 20
	ts := startServer(b, ServerOptions{})
	dial := func(uuid string, regions int64) *Client {
		return ts.dial(b, ClientOptions{UUID: uuid, Node: 1, DeviceSize: regions * tRegion,
			Args: []string{"clustered-core", tRS, "nosync"}})
	}
	big, small := dial("large", large), dial("small", 1024)
	defer big.Close()
	defer small.Close()
	measure(b, big, 200)
	b.ResetTimer()
	lat := measure(b, big, b.N)
	b.StopTimer()
	smallLat := measure(b, small, max(b.N, 1000))
	p50, sp50 := pct(lat, 0.5), pct(smallLat, 0.5)
	b.ReportMetric(p50, "p50-µs")
	b.ReportMetric(sp50, "1024-regions-p50-µs")
	b.ReportMetric(p50/sp50, "x-1024-regions")
}

// BenchmarkFlushConcurrent: 16 nodes, each on its own connection, flushing
// 32 marks in a loop against one clustered-core log; beside 16 goroutines
// doing the same on one in-process core log. Reports flushes/s.
func BenchmarkFlushConcurrent(b *testing.B) {
	const clients = 16
	ts := startServer(b, ServerOptions{})
	logs := make([]dirtylog.Log, clients)
	for i := range logs {
		c := ts.dial(b, ClientOptions{UUID: "bench16", Node: NodeID(i + 1), DeviceSize: 1024 * tRegion,
			Args: []string{"clustered-core", tRS, "nosync"}})
		defer c.Close()
		logs[i] = c
	}
	run := func(ls func(i int) dirtylog.Log, n int) float64 {
		ctx := context.Background()
		var wg sync.WaitGroup
		t0 := time.Now()
		for g := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				l := ls(g)
				base := dirtylog.Region(g%4) * 256
				for i := g; i < n; i += clients {
					if err := flushRound(ctx, l, base, i); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		return float64(n) / time.Since(t0).Seconds()
	}
	remote := func(i int) dirtylog.Log { return logs[i] }
	run(remote, 1000) // warm up
	b.ResetTimer()
	cpu0 := cpuTime()
	rate := run(remote, b.N)
	cpu := cpuTime() - cpu0
	b.StopTimer()
	core := benchCore(b)
	baseRate := run(func(int) dirtylog.Log { return core }, max(b.N, 100000))
	b.ReportMetric(rate, "flushes/s")
	b.ReportMetric(baseRate, "baseline-flushes/s")
	b.ReportMetric(rate/baseRate, "x-baseline")
	// Process CPU (client and server together) per flush: what the rate
	// would be bounded by on idle cores, whatever the machine's load.
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/flush")
}

// cpuTime returns the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
