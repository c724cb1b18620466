package mirror

import (
	"bytes"
	"context"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/dmlog/dmlog/dirtylog"
	"github.com/dmlog/dmlog/dirtylog/remote"
	"github.com/dmlog/dmlog/dirtylog/testdev"
)

// Two mirrors on two "nodes" share their legs through one remote
// (clustered) log, as two hosts running dm-raid1 on shared storage with
// cmirrord. Both write (disjoint blocks, as a cluster filesystem does)
// while the log starts with every region out of sync and both resync
// workers run; afterwards the legs are identical and every write is there.
func TestTwoNodesSharedLegsRemoteLog(t *testing.T) {
	const size, rs = 256 << 10, 16 << 10
	l, err := remote.ListenUnix(filepath.Join(t.TempDir(), "log.sock"))
	if err != nil {
		t.Fatal(err)
	}
	srv := remote.NewServer(remote.ServerOptions{})
	go srv.Serve(l)
	defer srv.Close()

	legs := []*testdev.Memory{testdev.NewMemory(size), testdev.NewMemory(size)}
	// Leg 0 starts with data leg 1 lacks: resync must copy it.
	if _, err := legs[0].WriteAt(fill(size, 'o'), 0); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var mirrors []*Mirror
	for node := range 2 {
		c, err := remote.Dial(ctx, "unix", l.Addr().String(), remote.ClientOptions{
			UUID: "shared-volume", Node: remote.NodeID(node + 1), DeviceSize: size,
			Args: []string{"clustered-core", "32", "sync"},
		})
		if err != nil {
			t.Fatal(err)
		}
		m, err := New([]Leg{legs[0], legs[1]}, c, Options{ResyncParallel: 2})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		mirrors = append(mirrors, m)
	}
	// Each node owns every other 4 KiB block.
	const bs = 4096
	want := legs[0].Bytes()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for node, m := range mirrors {
		for g := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(node), uint64(g)))
				for range 30 {
					blk := rng.IntN(size/bs/4)*4 + node*2 + g
					p := fill(bs, byte(rng.IntN(250)))
					if _, err := m.WriteAt(p, int64(blk*bs)); err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					copy(want[blk*bs:], p)
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	for _, m := range mirrors {
		if err := m.WaitInSync(ctx); err != nil {
			t.Fatalf("WaitInSync: %v (%s)", err, m.Status())
		}
	}
	if !bytes.Equal(legs[0].Bytes(), legs[1].Bytes()) {
		t.Fatalf("legs differ at %d", firstDiff(legs[0].Bytes(), legs[1].Bytes()))
	}
	if !bytes.Equal(legs[0].Bytes(), want) {
		t.Fatalf("a write was lost: first difference at %d", firstDiff(legs[0].Bytes(), want))
	}
	for _, m := range mirrors {
		if got := m.Stats().InSync; got != size/rs {
			t.Fatalf("in sync %d of %d", got, size/rs)
		}
	}
	_ = dirtylog.ErrWouldBlock
}
