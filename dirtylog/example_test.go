package dirtylog_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/dmlog/dmlog/dirtylog"
)

func ExampleNewCore() {
	ctx := context.Background()
	log, err := dirtylog.NewCore(dirtylog.Options{
		RegionSize: 512 << 10, // 1024 sectors
		DeviceSize: 64 << 20,
		Sync:       dirtylog.NoSync,
	})
	if err != nil {
		panic(err)
	}
	defer log.Close()

	r := dirtylog.Region(3)
	log.MarkRegion(r) // before writing to region 3
	if err := log.Flush(ctx); err != nil {
		panic(err)
	}
	clean, _ := log.IsClean(ctx, r)
	fmt.Println("clean while writing:", clean)
	log.ClearRegion(r) // every copy has the data
	clean, _ = log.IsClean(ctx, r)
	fmt.Println("clean after:", clean)
	fmt.Println(log.Status())
	fmt.Printf("%q\n", log.Table())
	// Output:
	// clean while writing: false
	// clean after: true
	// 1 core
	// "core 2 1024 nosync "
}

func ExampleOpenDisk() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "dirtylog-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "log.img")
	if err := os.WriteFile(path, make([]byte, 4096), 0o600); err != nil {
		panic(err)
	}

	// Any io.ReaderAt + io.WriterAt + Sync will do: here a file.
	dev, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		panic(err)
	}
	opts := dirtylog.Options{RegionSize: 512 << 10, DeviceSize: 16 << 20, Sync: dirtylog.NoSync, Name: "253:2"}
	log, err := dirtylog.OpenDisk(dev, opts)
	if err != nil {
		panic(err)
	}
	log.MarkRegion(3)
	log.MarkRegion(10)
	_ = log.Flush(ctx) // the marks are on the device now
	dev.Close()        // the program dies before clearing them

	// Reopening in the default mode turns the dirty regions into resync work.
	dev, err = os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		panic(err)
	}
	defer dev.Close()
	opts.Sync = dirtylog.DefaultSync
	log, err = dirtylog.OpenDisk(dev, opts)
	if err != nil {
		panic(err)
	}
	defer log.Close()
	fmt.Printf("in sync: %d/%d\n", log.SyncCount(), log.RegionCount())
	for {
		r, ok, _ := log.ResyncWork(ctx)
		if !ok {
			break
		}
		fmt.Println("resync region", r) // copy the region between legs here
		log.ClearRegion(r)
		log.SetRegionSync(r, true)
	}
	fmt.Println(log.Status())
	fmt.Printf("%q\n", log.Table())
	// Output:
	// in sync: 30/32
	// resync region 3
	// resync region 10
	// 3 disk 253:2 A
	// "disk 2 253:2 1024 "
}

func ExampleNew() {
	log, err := dirtylog.New("core", []string{"1024k"}, dirtylog.Env{DeviceSize: 1 << 30})
	fmt.Println(log == nil, err)
	log, err = dirtylog.New("core", []string{"1024", "nosync"}, dirtylog.Env{DeviceSize: 1 << 30})
	fmt.Println(log.RegionCount(), log.SyncCount(), err)
	// Output:
	// true dirtylog: invalid region size 1024k (in 512-byte sectors: want a power of two from 2 to the device's 2097152 sectors)
	// 2048 2048 <nil>
}

// DiskLogSize sizes a log device before it exists: here for a 1 GiB
// mirror in 64 KiB regions on a device with 4 KiB blocks. OpenDisk also
// grows an empty or short zeroed regular file to this size by itself.
func ExampleDiskLogSize() {
	n, err := dirtylog.DiskLogSize(1<<30, 64<<10, 4096)
	if err != nil {
		panic(err)
	}
	fmt.Println(n, "bytes")
	_, err = dirtylog.DiskLogSize(1<<30, 1000, 4096)
	fmt.Println(err)
	// Output:
	// 4096 bytes
	// dirtylog: invalid region size: Options.RegionSize is 1000 bytes: want a power of two of at least 1024 bytes and at most Options.DeviceSize (1073741824 bytes)
}
