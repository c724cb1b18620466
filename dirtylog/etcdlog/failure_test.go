package etcdlog

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dmlog/dmlog/dirtylog"
)

func openNode(t *testing.T, cli *clientv3.Client, o Options, node string) *Log {
	t.Helper()
	o.Node = node
	l, err := Open(testCtx(t), cli, o)
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	return l
}

func eventually(t *testing.T, d time.Duration, cond func() bool, msg string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf(msg, args...)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var nb = dirtylog.NonBlocking(context.Background())

// vol is the options of the tests' 100-region log "vol" (64 KiB regions,
// 5 s leases) created in mode.
func vol(mode dirtylog.SyncMode) Options {
	return Options{Name: "vol", RegionSize: 1 << 16, DeviceSize: 100 << 16, Sync: mode, LeaseTTL: 5 * time.Second}
}

// die stops l as if its process died, and ends its lease at once, as etcd
// does when the TTL runs out: the tests that are not about lease expiry
// (TestPartitionFencing, the cluster scenarios and the restart tests wait
// for the real thing) need not wait for it, and the node can keep a lease
// long enough not to lose it early on a loaded machine.
func die(t *testing.T, l *Log) {
	t.Helper()
	require.NoError(t, dieCtx(testCtx(t), l))
}

// dieCtx is die for a goroutine other than the test's: it returns the
// error for the test goroutine to report.
func dieCtx(ctx context.Context, l *Log) error {
	lease := l.session().Lease()
	l.abandon()
	if _, err := l.cli.Revoke(ctx, lease); err != nil {
		return fmt.Errorf("revoking the lease of node %q: %w", l.opts.Node, err)
	}
	return nil
}

// legs is a pair of shared in-memory legs.
type legs struct {
	mu sync.Mutex
	b  [2][]byte
}

func (lg *legs) write(leg int, off int64, p []byte) {
	lg.mu.Lock()
	defer lg.mu.Unlock()
	copy(lg.b[leg][off:], p)
}

func (lg *legs) copyRegion(off, n int64) {
	lg.mu.Lock()
	defer lg.mu.Unlock()
	copy(lg.b[1][off:off+n], lg.b[0][off:off+n])
}

// TestKillNodeMidWrite: two nodes write concurrently through the log
// (mark, flush, both legs, clear); one dies after writing only the first
// leg of a write. The survivor's janitor turns the dead node's marked
// regions into resync work, the survivor resyncs them, and the legs end
// identical with every acknowledged write present.
func TestKillNodeMidWrite(t *testing.T) {
	t.Parallel() // waits on leases and members, not on the CPU
	const (
		regionSize = 4096
		regions    = 64
		block      = 512
	)
	c := startCluster(t, 3)
	o := Options{Name: "vol", RegionSize: regionSize, DeviceSize: regions * regionSize, Sync: dirtylog.NoSync, LeaseTTL: 5 * time.Second}
	a := openNode(t, c.client(t), o, "a")
	b := openNode(t, c.client(t), o, "b")
	lg := &legs{}
	lg.b[0] = make([]byte, regions*regionSize)
	lg.b[1] = make([]byte, regions*regionSize)
	ctx := testCtx(t)

	var ackMu sync.Mutex
	acked := map[int64][]byte{} // block offset -> last acknowledged data
	// The writers run on their own goroutines: they return their errors
	// (and stop at the first) for the test goroutine to report.
	write := func(l *Log, rng *rand.Rand, lo, hi int, crash bool) error {
		r := dirtylog.Region(lo + rng.IntN(hi-lo))
		off := int64(r)*regionSize + int64(rng.IntN(regionSize/block))*block
		p := make([]byte, block)
		for i := range p {
			p[i] = byte(rng.Uint32())
		}
		l.MarkRegion(r)
		if err := l.Flush(ctx); err != nil {
			return fmt.Errorf("flushing the mark of region %d: %w", r, err)
		}
		lg.write(0, off, p)
		if crash {
			return dieCtx(ctx, l) // dies between the legs: not acknowledged
		}
		lg.write(1, off, p)
		l.ClearRegion(r)
		ackMu.Lock()
		acked[off] = p
		ackMu.Unlock()
		return nil
	}
	var wg sync.WaitGroup
	var errA, errB error
	wg.Add(2)
	go func() { // node a: regions [0, 32), dies at its 40th write
		defer wg.Done()
		rng := rand.New(rand.NewPCG(1, 1))
		for i := range 40 {
			if errA = write(a, rng, 0, 32, i == 39); errA != nil {
				return
			}
		}
	}()
	go func() { // node b: regions [16, 64): shares 16-31 with a
		defer wg.Done()
		rng := rand.New(rand.NewPCG(2, 2))
		for range 60 {
			if errB = write(b, rng, 16, 64, false); errB != nil {
				return
			}
			if rng.IntN(4) == 0 {
				if errB = b.Flush(ctx); errB != nil {
					return
				}
			}
		}
		errB = b.Flush(ctx)
	}()
	wg.Wait()
	require.NoError(t, errA, "node a")
	require.NoError(t, errB, "node b")
	require.False(t, bytes.Equal(lg.b[0], lg.b[1]), "the crash left the legs identical: the test did not test")

	// a's lease is gone; b (the only janitor candidate) reaps its marks.
	eventually(t, 10*time.Second, func() bool { return b.SyncCount() < regions }, "a's marks never became resync work")
	for {
		r, ok, err := b.ResyncWork(ctx)
		require.NoError(t, err)
		if !ok {
			break
		}
		lg.copyRegion(int64(r)*regionSize, regionSize)
		b.SetRegionSync(r, true)
	}
	require.EqualValues(t, regions, b.SyncCount())
	require.True(t, bytes.Equal(lg.b[0], lg.b[1]), "legs differ after resync")
	for off, p := range acked {
		require.Equal(t, p, lg.b[1][off:off+block], "acknowledged write at %d lost", off)
	}
	for r := dirtylog.Region(0); r < regions; r++ {
		clean, err := b.IsClean(ctx, r)
		require.NoError(t, err)
		require.True(t, clean, "region %d", r)
	}
}

// TestPartitionFencing: a node that cannot renew its lease (partitioned)
// loses its liveness key; its next flush fails with ErrFenced and writes
// nothing, the survivor turns its marks into resync work, and Resume
// rejoins once the partition heals.
func TestPartitionFencing(t *testing.T) {
	t.Parallel() // waits on leases and members, not on the CPU
	c := startCluster(t, 3)
	var events []dirtylog.Event
	var evMu sync.Mutex
	o := Options{Name: "vol", RegionSize: 1 << 16, DeviceSize: 100 << 16, Sync: dirtylog.NoSync, LeaseTTL: time.Second,
		OnEvent: func(e dirtylog.Event) { evMu.Lock(); events = append(events, e); evMu.Unlock() }}
	a := openNode(t, c.client(t), o, "a")
	o.OnEvent = nil
	o.LeaseTTL = 5 * time.Second
	b := openNode(t, c.client(t), o, "b")
	ctx := testCtx(t)

	a.MarkRegion(5) // a write in flight when the partition starts
	require.NoError(t, a.Flush(ctx))
	partition(ctx, t, a, b, 5)
	a.MarkRegion(9)
	err := a.Flush(ctx)
	require.ErrorIs(t, err, ErrFenced)
	require.ErrorIs(t, err, dirtylog.ErrLogFailed)
	require.Contains(t, a.Status(), " D")
	_, _, err = a.ResyncWork(ctx)
	require.ErrorIs(t, err, ErrFenced)
	resp, err := c.client(t).Get(ctx, a.k.marks("a"), clientv3.WithPrefix())
	require.NoError(t, err)
	require.Empty(t, resp.Kvs, "a fenced node's flush reached etcd")
	clean, err := b.IsClean(ctx, 9)
	require.NoError(t, err)
	require.True(t, clean)
	evMu.Lock()
	require.Len(t, events, 1)
	require.Equal(t, dirtylog.EventLogFailed, events[0].Kind)
	require.ErrorIs(t, events[0].Err, ErrFenced)
	evMu.Unlock()

	// The partition heals: Resume rejoins and recommits a's marks.
	a.noRenew.Store(false)
	require.NoError(t, a.Resume(ctx))
	require.Contains(t, a.Status(), " A")
	clean, err = b.IsClean(ctx, 9)
	require.NoError(t, err)
	require.False(t, clean, "a's mark was not recommitted after it rejoined")
	a.ClearRegion(9)
	a.ClearRegion(5)
	require.NoError(t, a.Flush(ctx))
	clean, err = b.IsClean(ctx, 9)
	require.NoError(t, err)
	require.True(t, clean)
}

// partition stops a's lease renewals, as behind a network partition, and
// waits until b sees a's marked region r become resync work (a's lease
// expired and the janitor reaped it).
func partition(ctx context.Context, t *testing.T, a, b *Log, r dirtylog.Region) {
	t.Helper()
	a.noRenew.Store(true)
	a.session().Orphan() // keepalives stop
	eventually(t, 10*time.Second, func() bool {
		in, err := b.InSync(ctx, r)
		return err == nil && !in
	}, "the partitioned node's marks never became resync work")
}

// TestFencingWithNothingToFlush: a node whose lease expired fails its next
// Flush even when it has nothing new to commit (its writes all go to
// regions it marked before), and that flush writes nothing.
func TestFencingWithNothingToFlush(t *testing.T) {
	t.Parallel() // waits on leases and members, not on the CPU
	c := startCluster(t, 3)
	o := Options{Name: "vol", RegionSize: 1 << 16, DeviceSize: 100 << 16, Sync: dirtylog.NoSync, LeaseTTL: time.Second}
	a := openNode(t, c.client(t), o, "a")
	o.LeaseTTL = 5 * time.Second
	b := openNode(t, c.client(t), o, "b")
	ctx := testCtx(t)

	a.MarkRegion(5)
	require.NoError(t, a.Flush(ctx))
	require.NoError(t, a.Flush(ctx), "an empty flush of a live node")
	partition(ctx, t, a, b, 5)
	a.MarkRegion(5) // already marked: nothing new to commit
	err := a.Flush(ctx)
	require.ErrorIs(t, err, ErrFenced)
	require.ErrorIs(t, err, dirtylog.ErrLogFailed)
	resp, err := c.client(t).Get(ctx, a.k.marks("a"), clientv3.WithPrefix())
	require.NoError(t, err)
	require.Empty(t, resp.Kvs, "a fenced node's marks are back in etcd")
}

// TestKillLeaderFlushesContinue: with three members, killing the raft
// leader interrupts flushes only for the election; nodes keep their
// leases and their flushes land.
func TestKillLeaderFlushesContinue(t *testing.T) {
	t.Parallel() // waits on leases and members, not on the CPU
	c := startCluster(t, 3)
	o := Options{Name: "vol", RegionSize: 1 << 16, DeviceSize: 100 << 16, Sync: dirtylog.NoSync, LeaseTTL: 3 * time.Second}
	a := openNode(t, c.client(t), o, "a")
	b := openNode(t, c.client(t), o, "b")
	ctx := testCtx(t)
	for r := dirtylog.Region(0); r < 10; r++ {
		a.MarkRegion(r)
		require.NoError(t, a.Flush(ctx))
	}
	leader := c.leader()
	require.GreaterOrEqual(t, leader, 0)
	t0 := time.Now()
	c.stop(leader)
	t.Logf("leader %d stopped in %v", leader, time.Since(t0))
	// Every flush eventually succeeds (a failure during the election is
	// reported, and the caller retries: the flush is idempotent). Each
	// attempt gets a second: a proposal the dead leader never committed
	// would otherwise wait out etcd's request timeout (about 6 s here).
	flush := func() error {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		return a.Flush(ctx)
	}
	failures := 0
	for r := dirtylog.Region(10); r < 20; r++ {
		a.MarkRegion(r)
		var err error
		deadline := time.Now().Add(20 * time.Second)
		for err = flush(); err != nil; err = flush() {
			failures++
			require.NotErrorIs(t, err, ErrFenced)
			require.ErrorIs(t, err, dirtylog.ErrLogFailed)
			require.True(t, time.Now().Before(deadline), "flush still failing: %v", err)
			time.Sleep(20 * time.Millisecond)
		}
	}
	t.Logf("flushes done %v after the stop (%d failed attempts)", time.Since(t0), failures)
	require.NotEqual(t, leader, c.leader())
	for r := dirtylog.Region(0); r < 20; r++ {
		clean, err := b.IsClean(ctx, r)
		require.NoError(t, err)
		require.False(t, clean, "region %d", r)
	}
	require.Contains(t, a.Status(), " A")
}

// TestRestartAllMembers: every member of a three-member cluster stops and
// starts again; flushed marks, sync state and a crashed node's marks
// survive, and the crashed node's marks still become resync work.
func TestRestartAllMembers(t *testing.T) {
	t.Parallel() // waits on leases and members, not on the CPU
	c := startCluster(t, 3)
	o := Options{Name: "vol", RegionSize: 1 << 16, DeviceSize: 100 << 16, Sync: dirtylog.NoSync, LeaseTTL: time.Second}
	ctx := testCtx(t)
	func() {
		cli := c.client(t)
		a := openNode(t, cli, o, "a")
		a.MarkRegion(3)
		a.MarkRegion(60)
		require.NoError(t, a.Flush(ctx))
		a.SetRegionSync(7, false)
		a.abandon() // crashes with its marks in etcd
		cli.Close() // clients first: members then stop quickly
	}()
	c.stopAll()
	o.LeaseTTL = 5 * time.Second
	var wg sync.WaitGroup
	errs := make([]error, len(c.members))
	for i := range c.members {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = c.start(i, false) }() // no t.Fatal off the test goroutine
	}
	wg.Wait()
	for i, err := range errs {
		require.NoError(t, err, "restarting member %d", i)
	}
	b := openNode(t, c.client(t), o, "b")
	in, err := b.InSync(ctx, 7)
	require.NoError(t, err)
	require.False(t, in, "sync state lost across the restart")
	eventually(t, 10*time.Second, func() bool {
		x, _ := b.InSync(ctx, 3)
		y, _ := b.InSync(ctx, 60)
		return !x && !y
	}, "the crashed node's marks were lost or never became resync work")
	require.EqualValues(t, 97, b.SyncCount())
}

// TestWatchGapRebuildsCache: a node whose watch falls behind a compaction
// rebuilds its cache from a linearizable read.
func TestWatchGapRebuildsCache(t *testing.T) {
	t.Parallel() // waits on leases and members, not on the CPU
	c := startCluster(t, 1)
	cli := c.client(t)
	o := vol(dirtylog.NoSync)
	a := openNode(t, cli, o, "a")
	b := openNode(t, c.client(t), o, "b")
	ctx := testCtx(t)
	resume := a.pauseWatch()
	b.MarkRegion(11)
	require.NoError(t, b.Flush(ctx))
	b.SetRegionSync(20, false)
	resp, err := cli.Get(ctx, "x")
	require.NoError(t, err)
	_, err = cli.Compact(ctx, resp.Header.Revision)
	require.NoError(t, err)
	in, err := a.InSync(nb, 20)
	require.NoError(t, err)
	require.True(t, in, "the paused cache saw a change: the test did not test")
	resume()
	eventually(t, 10*time.Second, func() bool { return a.rebuilds.Load() > 0 }, "no rebuild after a compacted watch")
	in, err = a.InSync(nb, 20)
	require.NoError(t, err)
	require.False(t, in)
	clean, err := a.IsClean(nb, 11)
	require.NoError(t, err)
	require.False(t, clean)
	require.EqualValues(t, 99, a.SyncCount())
	// And the watch works again afterwards.
	b.ClearRegion(11)
	require.NoError(t, b.Flush(ctx))
	eventually(t, 10*time.Second, func() bool { c, _ := a.IsClean(nb, 11); return c }, "watch not resumed after rebuild")
}

func TestLayoutMismatch(t *testing.T) {
	t.Parallel() // waits on leases and members, not on the CPU
	c := startCluster(t, 1)
	cli := c.client(t)
	ctx := testCtx(t)
	o := Options{Name: "vol", Node: "a", RegionSize: 1 << 16, DeviceSize: 100 << 16, LeaseTTL: 5 * time.Second}
	l := openNode(t, cli, o, "a")
	require.NoError(t, l.Close())

	for name, mut := range map[string]func(*Options){
		"region size":  func(o *Options) { o.RegionSize = 1 << 15 },
		"region count": func(o *Options) { o.DeviceSize = 101 << 16 },
	} {
		oo := o
		mut(&oo)
		_, err := Open(ctx, cli, oo)
		require.ErrorIs(t, err, ErrLayoutMismatch, name)
	}
	// Same geometry, a shorter last region: same count, opens fine.
	oo := o
	oo.DeviceSize = 100<<16 - 512
	l2, err := Open(ctx, cli, oo)
	require.NoError(t, err)
	require.NoError(t, l2.Close())

	_, err = cli.Put(ctx, l.k.meta(), `{"format":7,"regionSize":65536,"regionCount":100,"chunkRegions":32768}`)
	require.NoError(t, err)
	_, err = Open(ctx, cli, o)
	require.ErrorIs(t, err, ErrLayoutMismatch)
	require.ErrorContains(t, err, "format version 7")
	_, err = cli.Put(ctx, l.k.meta(), "garbage")
	require.NoError(t, err)
	_, err = Open(ctx, cli, o)
	require.ErrorIs(t, err, ErrCorrupt)
	_, err = Open(ctx, nil, o)
	require.ErrorIs(t, err, ErrBadOptions)
}

func TestNodeInUse(t *testing.T) {
	t.Parallel() // waits on leases and members, not on the CPU
	c := startCluster(t, 1)
	cli := c.client(t)
	o := Options{Name: "vol", RegionSize: 1 << 16, DeviceSize: 100 << 16, LeaseTTL: 5 * time.Second}
	openNode(t, cli, o, "a")
	// Long enough for Open's first requests on a loaded machine; the
	// holder's lease (5 s) outlives it.
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	o.Node = "a"
	_, err := Open(ctx, c.client(t), o)
	require.ErrorIs(t, err, ErrNodeInUse)
}

// TestRestartedNodeReapsOwnMarks: a node that crashed and restarts under
// the same id waits for its old lease, then turns its leftover marks into
// resync work in the transaction that registers it.
func TestRestartedNodeReapsOwnMarks(t *testing.T) {
	t.Parallel() // waits on leases and members, not on the CPU
	c := startCluster(t, 1)
	o := Options{Name: "vol", RegionSize: 1 << 16, DeviceSize: 100 << 16, Sync: dirtylog.NoSync, LeaseTTL: time.Second}
	ctx := testCtx(t)
	a := openNode(t, c.client(t), o, "a")
	a.MarkRegion(4)
	a.MarkRegion(40)
	require.NoError(t, a.Flush(ctx))
	// The liveness key is bound to the lease; the marks are not: they
	// must outlive the process.
	resp, err := c.client(t).Get(ctx, a.k.p, clientv3.WithPrefix())
	require.NoError(t, err)
	kinds := map[keyKind]int{}
	for _, kv := range resp.Kvs {
		pk, _ := a.k.parse(string(kv.Key))
		switch pk.kind {
		case kindMark:
			require.Zero(t, kv.Lease, "mark key %s is bound to a lease", kv.Key)
		case kindNode:
			require.NotZero(t, kv.Lease, "liveness key %s is not bound to a lease", kv.Key)
		}
		kinds[pk.kind]++
	}
	require.Equal(t, 1, kinds[kindMark])
	require.Equal(t, 1, kinds[kindNode])
	a.abandon()
	o.LeaseTTL = 5 * time.Second
	a2 := openNode(t, c.client(t), o, "a")
	for _, r := range []dirtylog.Region{4, 40} {
		in, err := a2.InSync(ctx, r)
		require.NoError(t, err)
		require.False(t, in, "region %d", r)
	}
	require.EqualValues(t, 98, a2.SyncCount())
	resp, err = c.client(t).Get(ctx, a2.k.marks("a"), clientv3.WithPrefix())
	require.NoError(t, err)
	require.Empty(t, resp.Kvs)
}

// goroutines counts the goroutines whose stack mentions sub.
func goroutines(sub string) int {
	buf := make([]byte, 4<<20)
	n := runtime.Stack(buf, true)
	count := 0
	for _, g := range strings.Split(string(buf[:n]), "\n\n") {
		if strings.Contains(g, sub) {
			count++
		}
	}
	return count
}

// logGoroutines counts goroutines running etcdlog code.
func logGoroutines() int { return goroutines("etcdlog.(*Log)") }

// clientGoroutines counts goroutines running etcd client code (the
// leases' keepalives, watch streams, elections a Log started).
func clientGoroutines() int { return goroutines("go.etcd.io/etcd/client/v3") }

func TestCloseStopsGoroutines(t *testing.T) {
	c := startCluster(t, 1)
	cli := c.client(t)
	ctx := testCtx(t)
	o := vol(dirtylog.ForceSync)
	// The client keeps a few goroutines of its own once it has kept a
	// lease alive and watched: count them after one Log came and went.
	warm := openNode(t, cli, Options{Name: "warm", RegionSize: o.RegionSize, DeviceSize: o.DeviceSize, LeaseTTL: o.LeaseTTL}, "w")
	require.NoError(t, warm.Close())
	eventually(t, 5*time.Second, func() bool { return logGoroutines() == 0 }, "goroutines left after Close: %d", logGoroutines())
	time.Sleep(100 * time.Millisecond)
	base := clientGoroutines()

	var logs []*Log
	for i := range 3 {
		l, err := Open(ctx, cli, Options{Name: o.Name, Node: fmt.Sprint("n", i), RegionSize: o.RegionSize, DeviceSize: o.DeviceSize, Sync: o.Sync, LeaseTTL: o.LeaseTTL})
		require.NoError(t, err)
		logs = append(logs, l)
		l.MarkRegion(dirtylog.Region(i))
		require.NoError(t, l.Flush(ctx))
		_, err = l.RemoteRecovering(nb, 50) // starts a background priority request
		require.NoError(t, err)
		_, _, err = l.ResyncWork(ctx)
		require.NoError(t, err)
	}
	// One more node is fenced and rejoins (a second session, a second
	// janitor campaign), then closes as well.
	f := openNode(t, cli, Options{Name: o.Name, Node: "fenced", RegionSize: o.RegionSize, DeviceSize: o.DeviceSize, Sync: o.Sync, LeaseTTL: o.LeaseTTL}, "fenced")
	_, err := cli.Revoke(ctx, f.session().Lease())
	require.NoError(t, err)
	f.MarkRegion(9)
	require.ErrorIs(t, f.Flush(ctx), ErrFenced)
	require.NoError(t, f.Resume(ctx))
	logs = append(logs, f)
	require.Positive(t, logGoroutines())
	require.Greater(t, clientGoroutines(), base)
	for _, l := range logs {
		l.ClearRegion(0)
		require.NoError(t, l.Close())
		require.ErrorIs(t, l.Close(), os.ErrClosed, "Close twice: the os.File convention")
		require.ErrorIs(t, l.Flush(ctx), dirtylog.ErrClosed)
	}
	eventually(t, 5*time.Second, func() bool { return logGoroutines() == 0 }, "goroutines left after Close: %d", logGoroutines())
	eventually(t, 5*time.Second, func() bool { return clientGoroutines() <= base },
		"client goroutines left after Close: %d, %d before the Logs opened", clientGoroutines(), base)
	leases, err := cli.Leases(ctx)
	require.NoError(t, err)
	require.Empty(t, leases.Leases, "Close left leases behind")
}

// TestLargeLogIsBounded: a 1,048,576-region log costs a bounded number of
// keys, and a flush of 100,000 marks spread over every chunk is one
// transaction.
func TestLargeLogIsBounded(t *testing.T) {
	t.Parallel() // waits on leases and members, not on the CPU
	c := startCluster(t, 1)
	cli := c.client(t)
	const regions = 1 << 20
	o := Options{Name: "big", RegionSize: 1 << 16, DeviceSize: regions << 16, LeaseTTL: 5 * time.Second}
	a := openNode(t, cli, o, "a")
	require.EqualValues(t, regions, a.RegionCount())
	rng := rand.New(rand.NewPCG(3, 3))
	for range 100_000 {
		a.MarkRegion(dirtylog.Region(rng.IntN(regions)))
	}
	// The janitor election writes a key of its own: let it settle.
	eventually(t, 10*time.Second, a.janitoring.Load, "no janitor elected")
	requireOneTxnFlush(t, cli, a)
	keys, bytes := footprint(t, cli, a.k.p)
	// meta, 32 sync and 32 pristine chunks, 32 mark chunks, the node key
	// and the janitor election key.
	require.LessOrEqual(t, keys, 1+3*maxChunks+2)
	// At most a 4 KiB bitmap per chunk value (the marks and the pristine
	// chunks their first writes rewrote are that dense), plus short keys.
	require.Less(t, bytes, 3*maxChunks*(1+minChunkRegions/8)+(1+3*maxChunks+2)*64)
	t.Logf("1,048,576 regions: %d keys, %d bytes", keys, bytes)
}

// requireOneTxnFlush flushes l and checks that the flush was one etcd
// transaction (the store's revision moved by one).
func requireOneTxnFlush(t *testing.T, cli *clientv3.Client, l *Log) {
	t.Helper()
	ctx := testCtx(t)
	before, err := cli.Get(ctx, "x")
	require.NoError(t, err)
	require.NoError(t, l.Flush(ctx))
	after, err := cli.Get(ctx, "x")
	require.NoError(t, err)
	require.Equal(t, before.Header.Revision+1, after.Header.Revision, "a flush must be one transaction")
}

// footprint returns the keys and bytes (keys plus values) under prefix.
func footprint(t testing.TB, cli *clientv3.Client, prefix string) (keys, bytes int) {
	resp, err := cli.Get(context.Background(), prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		keys++
		bytes += len(kv.Key) + len(kv.Value)
	}
	return keys, bytes
}

// TestOneJanitor: exactly one live node is the elected janitor; when it
// dies another takes over.
func TestOneJanitor(t *testing.T) {
	t.Parallel() // waits on leases and members, not on the CPU
	c := startCluster(t, 1)
	o := vol(dirtylog.NoSync)
	nodes := []*Log{openNode(t, c.client(t), o, "a"), openNode(t, c.client(t), o, "b"), openNode(t, c.client(t), o, "c")}
	janitors := func() (n int, who int) {
		for i, l := range nodes {
			if !l.closed.Load() && l.janitoring.Load() {
				n, who = n+1, i
			}
		}
		return n, who
	}
	eventually(t, 10*time.Second, func() bool { n, _ := janitors(); return n == 1 }, "no single janitor elected")
	_, who := janitors()
	survivor := nodes[(who+1)%3]
	survivor.MarkRegion(1)
	require.NoError(t, survivor.Flush(testCtx(t)))
	nodes[who].MarkRegion(50)
	require.NoError(t, nodes[who].Flush(testCtx(t)))
	die(t, nodes[who])
	eventually(t, 10*time.Second, func() bool { n, w := janitors(); return n == 1 && w != who }, "no new janitor after the first died")
	// The new janitor reaped the old one's marks, and nobody else's.
	eventually(t, 10*time.Second, func() bool { in, _ := survivor.InSync(nb, 50); return !in }, "the dead janitor's marks were not reaped")
	in, err := survivor.InSync(testCtx(t), 1)
	require.NoError(t, err)
	require.True(t, in)
	require.EqualValues(t, 99, survivor.SyncCount())
}
