package mirror_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/dmlog/dmlog/dirtylog"
	"github.com/dmlog/dmlog/dirtylog/testdev"
	"github.com/dmlog/dmlog/mirror"
)

// A two-leg mirror over two files with a core log: every region starts out
// of sync, the background resync copies leg 0 to leg 1, and then both legs
// serve reads.
func ExampleNew() {
	const size = 1 << 20
	dir, err := os.MkdirTemp("", "mirror-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	var legs []mirror.Leg
	for _, name := range []string{"leg0", "leg1"} {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			panic(err)
		}
		defer f.Close()
		if err := f.Truncate(size); err != nil {
			panic(err)
		}
		legs = append(legs, f)
	}

	log, err := dirtylog.NewCore(dirtylog.Options{RegionSize: 64 << 10, DeviceSize: size})
	if err != nil {
		panic(err)
	}
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

// Parse builds a mirror from a kernel table line, opening the devices it
// names (here files in a directory; Close closes them). The disk log's
// flush callback is wired to sync the legs.
func ExampleParse() {
	dir, err := os.MkdirTemp("", "mirror-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	for name, size := range map[string]int64{"253:2": 4096, "253:3": 1 << 20, "253:4": 1 << 20} {
		if err := os.WriteFile(filepath.Join(dir, name), make([]byte, size), 0o600); err != nil {
			panic(err)
		}
	}
	open := func(name string) (mirror.Leg, error) {
		return os.OpenFile(filepath.Join(dir, name), os.O_RDWR, 0)
	}

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

// With a disk log built by the caller, a LegsSyncer connects the log's
// flush callback to the mirror's legs, so a region's clean bit never
// reaches the log file before its data reaches the leg files.
func ExampleLegsSyncer() {
	const size = 1 << 20
	dir, err := os.MkdirTemp("", "mirror-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	files := createFiles(dir, 4096, size, size) // as in ExampleNew
	defer closeFiles(files)
	logFile, leg0, leg1 := files[0], files[1], files[2]

	s := new(mirror.LegsSyncer)
	log, err := dirtylog.OpenDisk(logFile, dirtylog.Options{
		RegionSize: 64 << 10, DeviceSize: size, Sync: dirtylog.NoSync, FlushCallback: s.Sync})
	if err != nil {
		panic(err)
	}
	m, err := mirror.New([]mirror.Leg{leg0, leg1}, log, mirror.Options{Syncer: s})
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
	dir, err := os.MkdirTemp("", "mirror-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	legs := createFiles(dir, size, size) // as in ExampleNew
	defer closeFiles(legs)
	log, err := dirtylog.NewCore(dirtylog.Options{RegionSize: 64 << 10, DeviceSize: size, Sync: dirtylog.NoSync})
	if err != nil {
		panic(err)
	}
	m, err := mirror.New([]mirror.Leg{legs[0], legs[1]}, log, mirror.Options{})
	if err != nil {
		panic(err)
	}
	defer m.Close()

	// Region 1 of leg 1 changes behind the mirror's back.
	if _, err := legs[1].WriteAt([]byte("bit rot"), 70000); err != nil {
		panic(err)
	}
	res, err := m.Verify(context.Background(), true)
	if err != nil {
		panic(err)
	}
	fmt.Println("mismatched:", res.Mismatched)
	if err := m.WaitInSync(context.Background()); err != nil {
		panic(err)
	}
	res, err = m.Verify(context.Background(), false)
	if err != nil {
		panic(err)
	}
	fmt.Println("after repair:", len(res.Mismatched))
	// Output:
	// mismatched: [1]
	// after repair: 0
}

// Discard punches a range out of the mirror: legs with a
// Discard(off, n int64) error method get it, others (like these files)
// get zeroes, so the legs stay identical.
func ExampleMirror_Discard() {
	const size = 256 << 10
	dir, err := os.MkdirTemp("", "mirror-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	files := createFiles(dir, size, size) // as in ExampleNew
	defer closeFiles(files)
	legs := []mirror.Leg{files[0], files[1]}
	log, err := dirtylog.NewCore(dirtylog.Options{RegionSize: 64 << 10, DeviceSize: size, Sync: dirtylog.NoSync})
	if err != nil {
		panic(err)
	}
	m, err := mirror.New(legs, log, mirror.Options{})
	if err != nil {
		panic(err)
	}
	defer m.Close()

	if _, err := m.WriteAt([]byte("keep this, drop that"), 0); err != nil {
		panic(err)
	}
	if err := m.Discard(11, 9); err != nil {
		panic(err)
	}
	buf := make([]byte, 20)
	if _, err := m.ReadAt(buf, 0); err != nil {
		panic(err)
	}
	fmt.Printf("%q\n", buf)
	// Output:
	// "keep this, \x00\x00\x00\x00\x00\x00\x00\x00\x00"
}

// createFiles creates files of the given sizes in dir, named leg0, leg1…,
// as ExampleNew does inline. The mirror's Close does not close legs it did
// not open: close them with closeFiles.
func createFiles(dir string, sizes ...int64) []*os.File {
	var fs []*os.File
	for i, n := range sizes {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("leg%d", i)))
		if err != nil {
			panic(err)
		}
		if err := f.Truncate(n); err != nil {
			panic(err)
		}
		fs = append(fs, f)
	}
	return fs
}

func closeFiles(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
}

// ParseWithOptions is Parse with the Options a table line cannot carry,
// here a resync rate and a read policy.
func ExampleParseWithOptions() {
	open := func(string) (mirror.Leg, error) { return testdev.NewMemory(1 << 20), nil }
	m, err := mirror.ParseWithOptions("0 2048 mirror core 1 128 2 a 0 b 0", open, mirror.Options{
		ResyncRate: 64 << 20, // bytes per second
		ReadPolicy: mirror.LeastPending,
	})
	if err != nil {
		panic(err)
	}
	defer m.Close()
	if err := m.WaitInSync(context.Background()); err != nil {
		panic(err)
	}
	p := m.Progress()
	fmt.Printf("resynced %d of %d regions\n", p.InSync, p.Total)
	// Output:
	// resynced 16 of 16 regions
}

// A FUA write is on every leg durably when WriteAtFUA returns: a power
// cut of the (in-memory) legs right after it keeps it, with no Sync.
func ExampleMirror_WriteAtFUA() {
	const size = 1 << 20
	legs := []*testdev.Memory{testdev.NewMemory(size), testdev.NewMemory(size)}
	log, err := dirtylog.NewCore(dirtylog.Options{RegionSize: 64 << 10, DeviceSize: size, Sync: dirtylog.NoSync})
	if err != nil {
		panic(err)
	}
	m, err := mirror.New([]mirror.Leg{legs[0], legs[1]}, log, mirror.Options{})
	if err != nil {
		panic(err)
	}
	defer m.Close()
	if _, err := m.WriteAtFUA([]byte("committed"), 0); err != nil {
		panic(err)
	}
	if _, err := m.WriteAt([]byte("in flight"), 4096); err != nil {
		panic(err)
	}
	for i, l := range legs {
		l.Crash(testdev.CrashOptions{Mode: testdev.DropAll})
		b := l.Bytes()
		fmt.Printf("leg %d: %q %q\n", i, b[:9], b[4096:4105])
	}
	// Output:
	// leg 0: "committed" "\x00\x00\x00\x00\x00\x00\x00\x00\x00"
	// leg 1: "committed" "\x00\x00\x00\x00\x00\x00\x00\x00\x00"
}
