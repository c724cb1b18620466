// Command relay runs inside the end-to-end tests' qemu guest. It listens on
// a unix socket and copies the bytes of the one connection it accepts to
// and from a virtio-serial port, whose other end, on the host, is a qemu
// chardev connected to dmlog's NBD server. The guest's own kernel NBD
// client then reaches the server with
//
//	nbd-client -u /run/nbd.sock /dev/nbd0
//
// which is the only way found to get FUA writes from a guest to the server
// unchanged (qemu's disk emulations split or drop FUA). The guest has no
// network at all.
//
//	relay -listen /run/nbd.sock -port nbd
//
// The port is found by its name in /sys/class/virtio-ports. relay prints
// "relay: ready" once listening (before that, clients would fail), and
// exits when the connection ends.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

func main() {
	listen := flag.String("listen", "/run/nbd.sock", "unix socket to listen on")
	port := flag.String("port", "nbd", "name of the virtio-serial port")
	flag.Parse()
	if err := run(*listen, *port); err != nil {
		fmt.Fprintf(os.Stderr, "relay: %v\n", err)
		os.Exit(1)
	}
}

// findPort returns the /dev node of the virtio-serial port named name.
func findPort(name string) (string, error) {
	names, _ := filepath.Glob("/sys/class/virtio-ports/*/name")
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err == nil && strings.TrimSpace(string(b)) == name {
			return filepath.Join("/dev", filepath.Base(filepath.Dir(n))), nil
		}
	}
	return "", fmt.Errorf("no virtio-serial port named %q among %d ports", name, len(names))
}

func run(listen, port string) error {
	dev, err := findPort(port)
	if err != nil {
		return err
	}
	// Open the port first: the virtio console driver discards what the
	// host sends to a port the guest has not opened.
	p, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer p.Close()
	l, err := net.Listen("unix", listen)
	if err != nil {
		return err
	}
	defer l.Close()
	fmt.Println("relay: ready")
	c, err := l.Accept()
	if err != nil {
		return err
	}
	defer c.Close()
	done := make(chan error, 2)
	go func() { done <- pump(p, c, "client") }()
	go func() { done <- pump(c, &portReader{f: p}, "host") }()
	// Either direction ending ends the session: the client hung up (after
	// NBD_CMD_DISC) or the server closed its side.
	if err := <-done; err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

// pump copies src to dst with plain reads and writes (no splice between
// the port and the socket), and writes the first bytes from each side to
// stderr, so that a missing or garbled greeting shows in the guest's
// console.
func pump(dst io.Writer, src io.Reader, from string) error {
	b := make([]byte, 256<<10)
	first := true
	for {
		n, err := src.Read(b)
		if first && n > 0 {
			fmt.Fprintf(os.Stderr, "relay: first %d bytes from the %s: % x\n", n, from, b[:min(n, 24)])
			first = false
		}
		if n > 0 {
			if _, werr := dst.Write(b[:n]); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// portReader reads a virtio-serial port. Until the first byte arrives, a
// read of 0 bytes means the host side is not connected yet (the driver
// learns of qemu's connection asynchronously), not the end: it waits and
// reads again, for up to a minute. After that, 0 bytes is the end.
type portReader struct {
	f       *os.File
	started bool
}

func (r *portReader) Read(b []byte) (int, error) {
	deadline := time.Now().Add(time.Minute)
	for {
		n, err := r.f.Read(b)
		if n > 0 {
			r.started = true
			return n, err
		}
		if r.started || (err != nil && err != io.EOF) || time.Now().After(deadline) {
			return n, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}
