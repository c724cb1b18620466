package mirror_test

import (
	"context"
	"fmt"

	"github.com/dmlog/dmlog/dirtylog"
	"github.com/dmlog/dmlog/internal/testdev"
	"github.com/dmlog/dmlog/mirror"
)

// A two-leg mirror with a core log: every region starts out of sync, the
// background resync copies leg 0 to leg 1, and then both legs serve reads.
func ExampleNew() {
	const size = 1 << 20
	log, err := dirtylog.NewCore(dirtylog.Options{RegionSize: 64 << 10, DeviceSize: size})
	if err != nil {
		panic(err)
	}
	legs := []mirror.Leg{testdev.NewMemory(size), testdev.NewMemory(size)}
	m, err := mirror.New(legs, log, mirror.Options{Names: []string{"253:3", "253:4"}})
	if err != nil {
		panic(err)
	}
	defer m.Close()
	if err := m.WaitInSync(context.Background()); err != nil {
		panic(err)
	}
	if _, err := m.WriteAt([]byte("hello, mirror"), 4096); err != nil {
		panic(err)
	}
	buf := make([]byte, 13)
	if _, err := m.ReadAt(buf, 4096); err != nil {
		panic(err)
	}
	fmt.Println(string(buf))
	fmt.Println(m.Status())
	fmt.Println(m.Table())
	// Output:
	// hello, mirror
	// 2 253:3 253:4 16/16 1 AA 1 core
	// core 1 128 2 253:3 0 253:4 0
}

// Parse builds a mirror from a kernel table line; the disk log's flush
// callback is wired to sync the legs.
func ExampleParse() {
	devs := map[string]*testdev.Memory{
		"253:2": testdev.NewMemory(4096),
		"253:3": testdev.NewMemory(1 << 20),
		"253:4": testdev.NewMemory(1 << 20),
	}
	open := func(name string) (mirror.Leg, error) { return devs[name], nil }
	m, err := mirror.Parse("0 2048 mirror disk 3 253:2 128 nosync 2 253:3 0 253:4 0 1 handle_errors", open)
	if err != nil {
		panic(err)
	}
	defer m.Close()
	fmt.Println(m.Status())
	fmt.Println(m.Table())
	// Output:
	// 2 253:3 253:4 16/16 1 AA 3 disk 253:2 A
	// disk 3 253:2 128 nosync 2 253:3 0 253:4 0 1 handle_errors
}

// With a log built by the caller, a LegsSyncer connects the log's flush
// callback to the mirror's legs.
func ExampleLegsSyncer() {
	const size = 1 << 20
	s := new(mirror.LegsSyncer)
	log, err := dirtylog.OpenDisk(testdev.NewMemory(4096), dirtylog.Options{
		RegionSize: 64 << 10, DeviceSize: size, Sync: dirtylog.NoSync, FlushCallback: s.Sync})
	if err != nil {
		panic(err)
	}
	legs := []mirror.Leg{testdev.NewMemory(size), testdev.NewMemory(size)}
	m, err := mirror.New(legs, log, mirror.Options{Syncer: s})
	if err != nil {
		panic(err)
	}
	if _, err := m.WriteAt(make([]byte, 8192), 0); err != nil {
		panic(err)
	}
	fmt.Println(m.Close())
	// Output:
	// <nil>
}

// Verify compares the legs; with repair, mismatched regions are resynced.
func ExampleMirror_Verify() {
	const size = 256 << 10
	log, _ := dirtylog.NewCore(dirtylog.Options{RegionSize: 64 << 10, DeviceSize: size, Sync: dirtylog.NoSync})
	leg1 := testdev.NewMemory(size)
	m, _ := mirror.New([]mirror.Leg{testdev.NewMemory(size), leg1}, log, mirror.Options{})
	defer m.Close()
	_, _ = leg1.WriteAt([]byte("bit rot"), 70000) // region 1 differs behind the mirror's back
	res, _ := m.Verify(context.Background(), true)
	fmt.Println("mismatched:", res.Mismatched)
	_ = m.WaitInSync(context.Background())
	res, _ = m.Verify(context.Background(), false)
	fmt.Println("after repair:", len(res.Mismatched))
	// Output:
	// mismatched: [1]
	// after repair: 0
}
