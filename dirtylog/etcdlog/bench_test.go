package etcdlog

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dmlog/dmlog/dirtylog"
	"github.com/dmlog/dmlog/dirtylog/remote"
)

const (
	benchRegionSize = 64 << 10
	benchRegions    = 1 << 16
)

// benchRemote starts a remote.Server on a Unix socket and returns a dial
// function for nodes of one clustered-core log on it.
func benchRemote(b *testing.B) func(node uint64) dirtylog.Log {
	dir, err := os.MkdirTemp("", "dmlb")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "s")
	ln, err := remote.ListenUnix(path)
	if err != nil {
		b.Fatal(err)
	}
	srv := remote.NewServer(remote.ServerOptions{})
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	b.Cleanup(func() { srv.Close(); <-done })
	return func(node uint64) dirtylog.Log {
		c, err := remote.Dial(context.Background(), "unix", path, remote.ClientOptions{
			UUID: "bench", Node: node, DeviceSize: benchRegions * benchRegionSize,
			Args: []string{"clustered-core", fmt.Sprint(benchRegionSize / dirtylog.SectorSize), "nosync"}, IntegratedFlush: true,
		})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		return c
	}
}

// benchEtcd starts one etcd member (WAL fsync on) and returns a function
// opening nodes of one log on it, each with its own client.
func benchEtcd(b *testing.B, name string, fsync bool) func(node int) *Log {
	c := startClusterWith(b, 1, fsync)
	return func(node int) *Log {
		l, err := Open(context.Background(), c.directClient(b), Options{
			Name: name, Node: fmt.Sprint("n", node), RegionSize: benchRegionSize,
			DeviceSize: benchRegions * benchRegionSize, Sync: dirtylog.NoSync, LeaseTTL: 10 * time.Second,
		})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { l.Close() })
		return l
	}
}

// flushLatencies runs n flushes of 32 fresh marks (and the clears of the
// previous 32) and returns the sorted latencies.
func flushLatencies(b *testing.B, l dirtylog.Log, n int) []time.Duration {
	ctx := context.Background()
	lat := make([]time.Duration, 0, n)
	var prev [32]dirtylog.Region
	for i := range n {
		for j := range prev {
			l.ClearRegion(prev[j])
			prev[j] = dirtylog.Region((i*32 + j) * 61 % benchRegions)
			l.MarkRegion(prev[j])
		}
		t0 := time.Now()
		if err := l.Flush(ctx); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	slices.Sort(lat)
	return lat
}

func pct(lat []time.Duration, p float64) float64 {
	if len(lat) == 0 {
		return 0
	}
	return float64(lat[min(len(lat)-1, int(float64(len(lat))*p))].Nanoseconds()) / 1e3
}

// BenchmarkFlush32Marks: the latency of a flush carrying 32 marks (and 32
// clears) on one node: etcdlog (one transaction, WAL fsync'd) beside the
// remote log server (clustered-core over a Unix socket, in this process)
// and an in-process core log, all in the same run; etcdlog without WAL
// fsync too, to separate etcd's cost from the disk's. ns/op is etcdlog's
// (fsync on).
func BenchmarkFlush32Marks(b *testing.B) {
	core, err := dirtylog.NewCore(dirtylog.Options{RegionSize: benchRegionSize, DeviceSize: benchRegions * benchRegionSize, Sync: dirtylog.NoSync})
	if err != nil {
		b.Fatal(err)
	}
	rem := benchRemote(b)(1)
	et := benchEtcd(b, "flush32", true)(0)
	etNoSync := benchEtcd(b, "flush32", false)(0)
	n := max(b.N, 50)
	coreLat := flushLatencies(b, core, n)
	remLat := flushLatencies(b, rem, n)
	noSyncLat := flushLatencies(b, etNoSync, n)
	b.ResetTimer()
	etLat := flushLatencies(b, et, b.N)
	b.StopTimer()
	b.ReportMetric(pct(etLat, 0.5), "etcd-p50-µs")
	b.ReportMetric(pct(etLat, 0.99), "etcd-p99-µs")
	b.ReportMetric(pct(remLat, 0.5), "remote-p50-µs")
	b.ReportMetric(pct(remLat, 0.99), "remote-p99-µs")
	b.ReportMetric(pct(coreLat, 0.5), "core-p50-µs")
	b.ReportMetric(pct(noSyncLat, 0.5), "etcd-nofsync-p50-µs")
	b.ReportMetric(pct(noSyncLat, 0.99), "etcd-nofsync-p99-µs")
	if p := pct(remLat, 0.5); p > 0 {
		b.ReportMetric(pct(etLat, 0.5)/p, "etcd/remote-p50")
	}
}

// flushRate runs the nodes' flush loops concurrently for d and returns
// flushes per second. Each flush carries 32 fresh marks and the clears of
// the previous 32 (the remote package's benchmark does the same).
func flushRate(b *testing.B, nodes []dirtylog.Log, d time.Duration) float64 {
	var total atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(d)
	for i, l := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			var prev [32]dirtylog.Region
			for k := 0; time.Now().Before(deadline); k++ {
				for j := range prev {
					l.ClearRegion(prev[j])
					prev[j] = dirtylog.Region((i*4099 + (k*32+j)*61) % benchRegions)
					l.MarkRegion(prev[j])
				}
				if err := l.Flush(ctx); err != nil {
					b.Error(err)
					return
				}
				total.Add(1)
			}
		}()
	}
	wg.Wait()
	return float64(total.Load()) / d.Seconds()
}

// BenchmarkFlushes16Nodes: flushes per second (32 marks each) with 16
// nodes flushing concurrently into one log, etcdlog beside the remote server in the same
// run. Each b.N iteration is 100 ms of load per backend (etcdlog with and
// without WAL fsync).
func BenchmarkFlushes16Nodes(b *testing.B) {
	const nodes = 16
	dialRemote := benchRemote(b)
	openEtcd := benchEtcd(b, "flush16", true)
	openNoSync := benchEtcd(b, "flush16", false)
	var rem, et, ns []dirtylog.Log
	for i := range nodes {
		rem = append(rem, dialRemote(uint64(i+1)))
		et = append(et, openEtcd(i))
		ns = append(ns, openNoSync(i))
	}
	b.ResetTimer()
	var remRate, etRate, nsRate float64
	for range b.N {
		remRate += flushRate(b, rem, 100*time.Millisecond)
		etRate += flushRate(b, et, 100*time.Millisecond)
		nsRate += flushRate(b, ns, 100*time.Millisecond)
	}
	b.StopTimer()
	b.ReportMetric(etRate/float64(b.N), "etcd-flushes/s")
	b.ReportMetric(nsRate/float64(b.N), "etcd-nofsync-flushes/s")
	b.ReportMetric(remRate/float64(b.N), "remote-flushes/s")
	if remRate > 0 {
		b.ReportMetric(etRate/remRate, "etcd/remote")
	}
}

// BenchmarkFootprint1Mi: keys and bytes (keys plus values) etcd stores
// for a 1,048,576-region log: fresh (created out of sync), then with one
// node holding 4096 marks spread over every chunk, then resynced. A key
// per region would cost about 1,048,576 keys.
func BenchmarkFootprint1Mi(b *testing.B) {
	c := startCluster(b, 1)
	cli := c.client(b)
	ctx := context.Background()
	for i := range b.N {
		name := fmt.Sprint("big", i)
		l, err := Open(ctx, cli, Options{Name: name, Node: "a", RegionSize: 1 << 16, DeviceSize: 1 << 36, LeaseTTL: 10 * time.Second})
		if err != nil {
			b.Fatal(err)
		}
		k0, b0 := footprint(b, cli, l.k.p)
		for j := range 4096 {
			l.MarkRegion(dirtylog.Region(j * 256))
		}
		if err := l.Flush(ctx); err != nil {
			b.Fatal(err)
		}
		k1, b1 := footprint(b, cli, l.k.p)
		// Resync everything: 32 chunk writes instead of 1 Mi set-syncs.
		for ci := range l.nchunks {
			words := make([]uint64, l.chunk/64)
			for j := range words {
				words[j] = ^uint64(0)
			}
			if _, err := cli.Txn(ctx).Then(
				clientOpPut(l.k.sync(ci), encodeChunk(words, l.c.chunkBits(ci))),
				clientOpDelete(l.k.pristine(ci)),
			).Commit(); err != nil {
				b.Fatal(err)
			}
		}
		k2, b2 := footprint(b, cli, l.k.p)
		l.Close()
		if i == b.N-1 {
			b.ReportMetric(float64(k0), "fresh-keys")
			b.ReportMetric(float64(b0), "fresh-bytes")
			b.ReportMetric(float64(k1), "marked-keys")
			b.ReportMetric(float64(b1), "marked-bytes")
			b.ReportMetric(float64(k2), "synced-keys")
			b.ReportMetric(float64(b2), "synced-bytes")
		}
	}
}

func clientOpPut(k string, v []byte) clientv3.Op { return clientv3.OpPut(k, string(v)) }
func clientOpDelete(k string) clientv3.Op        { return clientv3.OpDelete(k) }
