package mirror

import (
	"context"
	"testing"
	"time"

	"github.com/dmlog/dmlog/dirtylog"
	"github.com/dmlog/dmlog/dirtylog/testdev"
)

// A clear pass is put off while writers mark new regions (its legs' sync
// would stall their flushes), but only for a bounded number of passes, and
// it runs at the first quiet tick.
func TestClearPutOffWhileMarking(t *testing.T) {
	const rs, size = 1024, 4 << 20
	logDev := testdev.NewMemory(4096)
	legs := []Leg{testdev.NewMemory(size), testdev.NewMemory(size)}
	m, err := OpenDisk(legs, logDev, dirtylog.Options{RegionSize: rs, DeviceSize: size, Sync: dirtylog.NoSync},
		Options{ClearDelay: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx := context.Background()
	clean := func(r dirtylog.Region) bool {
		t.Helper()
		ok, err := m.Log().IsClean(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if _, err := m.WriteAt(fill(rs, 1), 0); err != nil {
		t.Fatal(err)
	}
	// Mark a new region every millisecond: every clear tick sees flushes.
	next := int64(1)
	markNew := func() {
		t.Helper()
		if next*rs >= size {
			t.Fatal("ran out of new regions before the clear ran")
		}
		if _, err := m.WriteAt(fill(rs, 2), next*rs); err != nil {
			t.Fatal(err)
		}
		next++
		time.Sleep(time.Millisecond) // pacing, not synchronisation
	}
	deadline := time.Now().Add(20 * time.Second)
	for m.Stats().ClearDefers == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no clear pass was put off while regions were being marked")
		}
		markNew()
	}
	if clean(0) {
		t.Fatal("region 0 was cleared although its clear pass was put off")
	}
	// Still marking: the pass is put off at most maxClearDefers times.
	for !clean(0) {
		if time.Now().After(deadline) {
			t.Fatalf("region 0 never cleared while writes went on (%d passes put off)", m.Stats().ClearDefers)
		}
		markNew()
	}
	if d := m.Stats().ClearDefers; d > maxClearDefers+1 {
		t.Fatalf("%d clear passes put off in a row, want at most %d", d, maxClearDefers)
	}
	// Quiet: the next tick clears what is idle.
	last := dirtylog.Region(next - 1)
	for !clean(last) {
		if time.Now().After(deadline) {
			t.Fatalf("region %d not cleared once the writes stopped", last)
		}
		time.Sleep(time.Millisecond)
	}
}
