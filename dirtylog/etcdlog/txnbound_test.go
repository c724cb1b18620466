package etcdlog

import (
	"math/bits"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dmlog/dmlog/dirtylog"
)

// markHalf marks every region of l with probability 1/2, so every chunk
// value is a full bitmap, the longest encoding; it returns the count. It
// sets the bitmap directly: MarkRegion one region at a time would cost
// seconds under the race detector.
func markHalf(l *Log, seed uint64) uint64 {
	rng := rand.New(rand.NewPCG(seed, seed))
	var n uint64
	for i := range l.marked {
		w := rng.Uint64()
		if tail := l.count - uint64(i)*64; tail < 64 {
			w &= 1<<tail - 1
		}
		l.marked[i].Store(w)
		n += uint64(bits.OnesCount64(w))
	}
	l.dirty.Store(1<<l.nchunks - 1)
	return n
}

// TestTxnsBounded: on the largest log this package accepts, with the
// longest values it can write, the flush and the janitor's transaction
// are single transactions that etcd accepts with its default limits
// (128 operations, 1.5 MiB per request; the harness keeps the defaults).
func TestTxnsBounded(t *testing.T) {
	t.Parallel() // waits on leases and members, not on the CPU
	c := startCluster(t, 1)
	cli := c.client(t)
	ctx := testCtx(t)
	regions := uint64(MaxRegions)
	o := Options{RegionSize: 1024, DeviceSize: int64(regions) * 1024, LeaseTTL: 5 * time.Second}

	t.Run("flush", func(t *testing.T) {
		// Created out of sync: every first write to a region also
		// rewrites its pristine chunk in the same transaction.
		o := o
		o.Name, o.Sync = "flush", dirtylog.DefaultSync
		a := openNode(t, cli, o, "a")
		require.EqualValues(t, regions, a.RegionCount())
		markHalf(a, 1)
		eventually(t, 10*time.Second, a.janitoring.Load, "no janitor elected")
		requireOneTxnFlush(t, cli, a)
	})

	t.Run("janitor", func(t *testing.T) {
		// In sync: reaping a dead node rewrites every sync chunk.
		o := o
		o.Name, o.Sync = "janitor", dirtylog.NoSync
		a := openNode(t, cli, o, "a")
		b := openNode(t, c.client(t), o, "b")
		n := markHalf(a, 2)
		require.NoError(t, a.Flush(ctx))
		die(t, a)
		eventually(t, 15*time.Second, func() bool { return b.SyncCount() == regions-n },
			"the dead node's marks never became resync work: %d in sync, want %d", b.SyncCount(), regions-n)
		resp, err := cli.Get(ctx, a.k.marks("a"), clientv3.WithPrefix(), clientv3.WithCountOnly())
		require.NoError(t, err)
		require.Zero(t, resp.Count)
	})
}
