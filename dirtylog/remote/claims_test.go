package remote

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dmlog/dmlog/dirtylog"
)

// TestLostResyncReplyIsOfferedAgain: the server handed node 5 a region,
// and the reply was lost with the connection. When node 5 comes back
// (CTR on a new connection) and asks again, it gets the same region, and
// keeps getting it until it sets it in sync; node 6 gets nothing
// meanwhile, since node 5 is the recoverer.
func TestLostResyncReplyIsOfferedAgain(t *testing.T) {
	checkGoroutines(t)
	ts := startServer(t, ServerOptions{DeadAfter: -1})
	ctr := []byte(fmt.Sprintf("%d clustered-core %s sync\x00", tDevice/512, tRS))
	join := func(node NodeID) *rawConn {
		rc := dialRaw(t, ts.path)
		rh, p := rc.call(Header{Seq: 1, Type: RequestCtr, LUID: node, UUID: "lost"}, ctr)
		require.Zero(t, rh.Error, string(p))
		rh, _ = rc.call(Header{Seq: 2, Type: RequestResume, LUID: node, UUID: "lost"}, nil)
		require.Zero(t, rh.Error)
		return rc
	}
	work := func(rc *rawConn, node NodeID) (bool, uint64) {
		rh, p := rc.call(Header{Seq: 3, Type: RequestGetResyncWork, LUID: node, UUID: "lost"}, nil)
		require.Zero(t, rh.Error)
		require.Len(t, p, 16)
		return binary.LittleEndian.Uint64(p) != 0, binary.LittleEndian.Uint64(p[8:])
	}
	a := join(5)
	b := join(6)
	ok, r := work(a, 5)
	require.True(t, ok)
	a.nc.Close() // the reply is "lost" with the connection

	ok, _ = work(b, 6)
	require.False(t, ok, "another node got work while node 5 holds a claim")
	a = join(5)
	ok, r2 := work(a, 5)
	require.True(t, ok)
	require.Equal(t, r, r2, "asking again after a reconnect must return the same region")
	ok, r3 := work(a, 5)
	require.True(t, ok)
	require.Equal(t, r, r3, "asking again must return the same region until it is set")
	ok, _ = work(b, 6)
	require.False(t, ok, "another node got work while node 5 holds a claim")
}

// TestAbandonedResyncWorkIsOfferedAgain: a ResyncWork whose context ends
// after the server claimed a region for the node, but before the reply
// arrived, must not leave that claim stuck: the next ResyncWork returns
// it (otherwise the region is never resynced and, the node being the
// recoverer, no other node ever gets work).
func TestAbandonedResyncWorkIsOfferedAgain(t *testing.T) {
	checkGoroutines(t)
	var armed atomic.Bool
	returned := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ts := startTracedServer(t, ServerOptions{}, func(h *Header, p []byte) {
		if h.Type == RequestGetResyncWork && armed.CompareAndSwap(true, false) {
			cancel()
			<-returned // reply only after the client gave up
		}
	})
	const n = 4
	o := ClientOptions{UUID: "abandon", Node: 1, DeviceSize: n * tRegion, Args: []string{"clustered-core", tRS, "sync"}}
	a := ts.dial(t, o)
	defer a.Close()
	o.Node = 2
	b := ts.dial(t, o)
	defer b.Close()

	armed.Store(true)
	_, _, err := a.ResyncWork(ctx)
	close(returned)
	require.ErrorIs(t, err, context.Canceled)

	bg := context.Background()
	for want := range dirtylog.Region(n) {
		r, ok, err := a.ResyncWork(bg)
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, want, r, "regions are recovered one at a time, in order (region 0 was the abandoned claim)")
		_, ok, err = b.ResyncWork(bg)
		require.NoError(t, err)
		require.False(t, ok, "node 2 got work while node 1 recovers")
		a.SetRegionSync(r, true)
	}
	require.EqualValues(t, n, b.SyncCount())
	_, ok, err := b.ResyncWork(bg)
	require.NoError(t, err)
	require.False(t, ok)
}
