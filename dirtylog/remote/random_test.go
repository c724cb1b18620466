package remote

import (
	"context"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dmlog/dmlog/dirtylog"
)

// TestRandomClusterNothingAcknowledgedIsLost drives a disk-backed log with
// several nodes through random marks, clears, flushes, recoveries, node
// crashes and rejoins, connection drops and server restarts. After every
// step, a region whose mark a live node had acknowledged by Flush (and not
// cleared since) must read dirty from every node. At the end, once every
// node cleared and every region was resynced, all must be clean.
// DMLOG_LONG=1 runs more steps.
func TestRandomClusterNothingAcknowledgedIsLost(t *testing.T) {
	checkGoroutines(t)
	steps := 400
	if os.Getenv("DMLOG_LONG") != "" {
		steps = 20000
	}
	const nodes, regions = 4, 48
	const deadAfter = 400 * time.Millisecond
	// The server's clock is the test's: every step advances it by 5 ms,
	// so deaths and the restart grace come at steps, not at the mercy of
	// the machine's speed.
	devs := &memDevices{}
	ts, clk, _ := startClockedServer(t, ServerOptions{Open: devs.open, DeadAfter: deadAfter})
	ctx := context.Background()
	opts := func(n int) ClientOptions {
		return ClientOptions{UUID: "random", Node: NodeID(n + 1), DeviceSize: regions * tRegion,
			Args:      []string{"clustered-disk", "ld", tRS, "nosync"},
			RedialMin: time.Millisecond, RedialMax: 10 * time.Millisecond, RetryTimeout: 10 * time.Second,
			IntegratedFlush: n%2 == 1}
	}
	cl := make([]*Client, nodes)
	acked := make([]map[dirtylog.Region]bool, nodes)   // flushed marks, not cleared since
	pending := make([]map[dirtylog.Region]bool, nodes) // marked, not yet flushed
	for i := range cl {
		cl[i] = ts.dial(t, opts(i))
		acked[i], pending[i] = map[dirtylog.Region]bool{}, map[dirtylog.Region]bool{}
	}
	defer func() {
		for _, c := range cl {
			c.Close()
		}
	}()
	seed := uint64(1)
	if s := os.Getenv("DMLOG_SEED"); s != "" {
		var err error
		seed, err = strconv.ParseUint(s, 10, 64)
		require.NoError(t, err, "DMLOG_SEED")
	}
	t.Logf("seed %d (DMLOG_SEED to repeat)", seed)
	rng := rand.New(rand.NewPCG(seed, 2))
	check := func(step int) {
		t.Helper()
		viewer := cl[rng.IntN(nodes)]
		for i := range cl {
			for r := range acked[i] {
				clean, err := viewer.IsClean(ctx, r)
				require.NoError(t, err, "step %d", step)
				require.False(t, clean, "step %d: region %d, flushed-marked by node %d, reads clean", step, r, i)
			}
		}
	}
	for step := range steps {
		clk.advance(5 * time.Millisecond)
		i := rng.IntN(nodes)
		c := cl[i]
		r := dirtylog.Region(rng.IntN(regions))
		switch op := rng.IntN(100); {
		case op < 30:
			c.MarkRegion(r)
			pending[i][r] = true
		case op < 50:
			c.ClearRegion(r)
			delete(pending[i], r)
			delete(acked[i], r)
		case op < 75:
			require.NoError(t, c.Flush(ctx), "step %d", step)
			for r := range pending[i] {
				acked[i][r] = true
			}
			clear(pending[i])
		case op < 85:
			if w, ok, err := c.ResyncWork(ctx); err == nil && ok {
				c.SetRegionSync(w, true)
			}
		case op < 88:
			rec, err := c.RemoteRecovering(ctx, r)
			require.NoError(t, err)
			in, err := c.InSync(ctx, r)
			require.NoError(t, err)
			require.Equal(t, !in, rec, "step %d: region %d", step, r)
		case op < 91: // crash and come back as the same node
			c.crash()
			if rng.IntN(2) == 0 { // declared dead before it comes back
				waitDisconnected(t, ts, "random", NodeID(i+1))
				clk.advance(deadAfter)
			}
			cl[i] = ts.dial(t, opts(i))
			clear(acked[i])
			clear(pending[i])
		case op < 95:
			c.dropConnection()
		case op < 97:
			ts.restart(t)
		default:
			require.NoError(t, c.Suspend(ctx))
			require.NoError(t, c.Resume(ctx))
			for r := range pending[i] {
				acked[i][r] = true
			}
			clear(pending[i])
		}
		check(step)
	}
	// Converge: every node clears what it marked, then resync everything.
	for i, c := range cl {
		for r := range regions {
			c.ClearRegion(dirtylog.Region(r))
		}
		require.NoError(t, c.Flush(ctx))
		clear(acked[i])
	}
	clk.advance(deadAfter) // past DeadAfter: deaths landed, restart grace over
	for {
		w, ok, err := cl[0].ResyncWork(ctx)
		require.NoError(t, err)
		if !ok {
			break
		}
		cl[0].SetRegionSync(w, true)
	}
	for r := range regions {
		clean, err := cl[1].IsClean(ctx, dirtylog.Region(r))
		require.NoError(t, err)
		require.True(t, clean, "region %d", r)
	}
	require.EqualValues(t, regions, cl[2].SyncCount())
	require.NoError(t, cl[3].Suspend(ctx))
	img, err := dirtylog.ReadDiskImage(devs.get("ld"), 64<<10)
	require.NoError(t, err)
	require.Empty(t, img.Dirty(), "the disk disagrees with the server")
}
