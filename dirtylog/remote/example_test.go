package remote_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/dmlog/dmlog/dirtylog"
	"github.com/dmlog/dmlog/dirtylog/remote"
	"github.com/dmlog/dmlog/dirtylog/testdev"
)

// Two nodes share one clustered log: a region stays dirty until every
// node that marked it has cleared it.
func Example() {
	dir, _ := os.MkdirTemp("", "dmlog")
	defer os.RemoveAll(dir)
	l, err := remote.ListenUnix(filepath.Join(dir, "log.sock"))
	if err != nil {
		panic(err)
	}
	srv := remote.NewServer(remote.ServerOptions{})
	go srv.Serve(l)
	defer srv.Close()

	ctx := context.Background()
	node := func(id remote.NodeID) *remote.Client {
		c, err := remote.Dial(ctx, "unix", l.Addr().String(), remote.ClientOptions{
			UUID: "volume-1", Node: id, DeviceSize: 1 << 30,
			Args: []string{"clustered-core", "1024", "nosync"},
		})
		if err != nil {
			panic(err)
		}
		return c
	}
	a, b := node(1), node(2)
	defer a.Close()
	defer b.Close()

	a.MarkRegion(7)
	b.MarkRegion(7)
	_ = a.Flush(ctx)
	_ = b.Flush(ctx)
	a.ClearRegion(7)
	_ = a.Flush(ctx)
	clean, _ := b.IsClean(ctx, 7)
	fmt.Println("after A's clear:", clean)
	b.ClearRegion(7)
	_ = b.Flush(ctx)
	clean, _ = a.IsClean(ctx, 7)
	fmt.Println("after B's clear:", clean)
	fmt.Printf("%s | %q\n", a.Status(), a.Table())
	// Output:
	// after A's clear: false
	// after B's clear: true
	// 1 clustered-core | "userspace 4 volume-1 clustered-core 1024 nosync "
}

// A server with a disk backend keeps the kernel's disk format on the
// device its opener returns.
func ExampleNewServer() {
	dev := testdev.NewMemory(64 << 10)
	srv := remote.NewServer(remote.ServerOptions{
		Open: func(name string) (dirtylog.Device, error) { return dev, nil },
	})
	dir, _ := os.MkdirTemp("", "dmlog")
	defer os.RemoveAll(dir)
	l, _ := remote.ListenUnix(filepath.Join(dir, "log.sock"))
	go srv.Serve(l)

	ctx := context.Background()
	c, err := remote.Dial(ctx, "unix", l.Addr().String(), remote.ClientOptions{
		UUID: "volume-2", Node: 1, DeviceSize: 64 << 20,
		Args: []string{"clustered-disk", "logdev", "1024", "nosync"}, IntegratedFlush: true,
	})
	if err != nil {
		panic(err)
	}
	c.MarkRegion(3)
	_ = c.Flush(ctx) // durable on dev before Flush returns
	img, _ := dirtylog.ReadDiskImage(dev, dev.Size())
	fmt.Println(c.Status(), img.Dirty())
	c.Close()
	srv.Close()
	// Output: 3 clustered-disk logdev A [3]
}

// While the server cannot be reached, Flush fails and non-blocking
// queries say they would block.
func ExampleDial_unreachable() {
	dir, _ := os.MkdirTemp("", "dmlog")
	defer os.RemoveAll(dir)
	l, _ := remote.ListenUnix(filepath.Join(dir, "log.sock"))
	srv := remote.NewServer(remote.ServerOptions{})
	go srv.Serve(l)

	ctx := context.Background()
	c, err := remote.Dial(ctx, "unix", l.Addr().String(), remote.ClientOptions{
		UUID: "volume-3", Node: 1, DeviceSize: 1 << 30,
		Args: []string{"clustered-core", "1024"}, RetryTimeout: 1,
	})
	if err != nil {
		panic(err)
	}
	srv.Close()
	c.MarkRegion(1)
	fmt.Println(c.Flush(ctx) != nil)
	_, err = c.InSync(dirtylog.NonBlocking(ctx), 1)
	fmt.Println(err)
	c.Close()
	// Output:
	// true
	// dirtylog: operation would block
}

// The kernel's table grammar builds a client through the dirtylog
// registry once the "userspace" type knows where the server is.
func ExampleRegisterUserspace() {
	dir, _ := os.MkdirTemp("", "dmlog")
	defer os.RemoveAll(dir)
	l, _ := remote.ListenUnix(filepath.Join(dir, "log.sock"))
	srv := remote.NewServer(remote.ServerOptions{})
	go srv.Serve(l)
	defer srv.Close()

	if err := remote.RegisterUserspace("unix", l.Addr().String(), remote.ClientOptions{Node: 1}); err != nil {
		panic(err)
	}
	// userspace 4 volume-4 integrated_flush clustered-core 1024
	log, err := dirtylog.New("userspace", []string{"volume-4", "integrated_flush", "clustered-core", "1024"},
		dirtylog.Env{DeviceSize: 1 << 30})
	if err != nil {
		panic(err)
	}
	defer log.Close()
	fmt.Printf("%q %d regions\n", log.Table(), log.RegionCount())
	// Output: "userspace 4 volume-4 integrated_flush clustered-core 1024 " 2048 regions
}
