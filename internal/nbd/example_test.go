package nbd_test

import (
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/dmlog/dmlog/internal/nbd"
)

// Serve a file as the default export on a unix socket; clients attach with
// "nbd-client -u SOCK /dev/nbd0" or "qemu-io -f raw nbd+unix:///?socket=SOCK".
func ExampleServer_Serve() {
	dir, _ := os.MkdirTemp("", "nbd-example")
	defer os.RemoveAll(dir)
	f, _ := os.Create(filepath.Join(dir, "disk.img"))
	defer f.Close()
	f.Truncate(64 << 20)

	// *os.File has ReadAt, WriteAt and Sync: the export offers flush and
	// FUA (a write followed by Sync).
	srv, err := nbd.NewServer(nbd.Options{}, nbd.Export{Size: 64 << 20, Dev: f, MultiConn: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	l, err := net.Listen("unix", filepath.Join(dir, "nbd.sock"))
	if err != nil {
		fmt.Println(err)
		return
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	// ... clients connect ...
	srv.Close() // stop accepting, finish requests in flight, wait
	fmt.Println(<-done)
	// Output: nbd: server closed
}
