// Command nbd-server serves a dmlog device as a Network Block Device, so
// that Linux (nbd-client), qemu and libnbd's tools can use it as a disk.
//
//	nbd-server -listen unix:/run/nbd.sock -file disk.img [-size 1GiB]
//	nbd-server -listen unix:/run/nbd.sock -mirror leg1.img,leg2.img -log mirror.log [-region 64KiB] [-size 1GiB]
//	nbd-server -listen unix:/run/nbd.sock -record dev.img -log writes.log [-control unix:/run/nbd.ctl]
//
// Exactly one backend is served:
//
//   - -file IMG: a plain file or block device (created with -size if it
//     does not exist).
//   - -mirror LEG1,LEG2 -log LOG: a RAID1 mirror (package mirror) with a dm
//     disk log. On first use the log is created (and missing legs, given
//     -size); when the legs were created too, nothing is resynced, else
//     every region is copied from LEG1. An existing log must be a disk log
//     of the same geometry: it is trusted, and the regions it marks dirty
//     (after a crash) are resynced from LEG1 in the background while the
//     device is served, with progress printed.
//   - -record DEV -log LOG: DEV wrapped by a dm-log-writes Recorder
//     (package logwrites) that logs every write, FUA write, flush and
//     discard to LOG in the kernel's format, for replay-log. LOG must be
//     new or empty (or -overwrite-log). Requests must be aligned to
//     -sector, which the server advertises as its minimum block size.
//
// Every file is locked (flock) while served: a second dmlog program opening
// it gets "in use". A unix socket path is never taken over from a live
// server, and a path that is not a socket is never replaced.
//
// -listen tcp:HOST:PORT listens on TCP; an address other than loopback
// requires TLS (-tls-cert and -tls-key, with -tls-ca to require client
// certificates signed by that CA). With TLS, clients must use
// NBD_OPT_STARTTLS (nbd-client -certfile/-keyfile/-cacertfile, or
// nbd+unix/nbds:// URIs with libnbd's tls settings).
//
// At most -max-conns connections (default 16) are served at once; a
// client beyond that is refused in the handshake with "too many
// connections" (qemu prints it; logged with -v). Each connection may hold
// up to 64 MiB of requests in flight.
//
// -control unix:PATH opens a control socket taking one command per line:
// "mark NAME" places a mark in the Recorder's log (as dmsetup message
// DEV 0 mark NAME does for the kernel target) and answers "ok", or
// "error: REASON"; "status" answers "ok " and the backend's status line.
// For example:
//
//	echo "mark mkfs" | socat - UNIX-CONNECT:/run/nbd.ctl
//
// SIGINT or SIGTERM stops accepting connections, lets the requests already
// received finish and their replies go out, flushes the backend, closes
// the log (a Recorder writes its end mark), removes the sockets and exits
// 0. -h prints this usage; a bad flag or value exits 2 with one line.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"

	"github.com/dmlog/dmlog/internal/cli"
	"github.com/dmlog/dmlog/internal/nbd"
	"github.com/dmlog/dmlog/internal/units"
)

func main() {
	ctx, stop := cli.SignalContext()
	defer stop()
	cli.Exit("nbd-server", run(ctx, os.Args[1:], os.Stdout, nil))
}

// usageError is a bad flag or value: exit status 2.
type usageError = cli.UsageError

var usagef = cli.Usagef

// ready, when run is called by a test, receives the server's addresses.
type ready func(listen, control net.Addr)

// run parses args, serves until ctx is done, then shuts down cleanly.
// Everything it prints goes to out.
func run(ctx context.Context, args []string, out io.Writer, onReady ready) error {
	fs := flag.NewFlagSet("nbd-server", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	listen := fs.String("listen", "", "where to serve: unix:PATH or tcp:HOST:PORT (required)")
	control := fs.String("control", "", "control socket unix:PATH taking \"mark NAME\" and \"status\" lines")
	file := fs.String("file", "", "serve this file or block device")
	mirrorLegs := fs.String("mirror", "", "serve a mirror of these legs: LEG1,LEG2[,...] (needs -log)")
	record := fs.String("record", "", "serve this device through a log-writes recorder (needs -log)")
	logPath := fs.String("log", "", "the mirror's disk log, or the recorder's log-writes log")
	name := fs.String("name", "", "export name (clients may also ask for the default export \"\")")
	var size, region units.Size
	region = 64 << 10
	fs.Var(&size, "size", "device size, to create missing files (KiB, MiB, GiB suffixes); existing files must have it")
	fs.Var(&region, "region", "mirror region size, a power of two of at least 1KiB")
	sector := fs.Int("sector", 512, "recorder sector size: 512 to 4096, a power of two")
	overwrite := fs.Bool("overwrite-log", false, "let -record overwrite a log file that is not empty")
	certFile := fs.String("tls-cert", "", "server certificate (PEM): clients must use STARTTLS")
	keyFile := fs.String("tls-key", "", "server private key (PEM)")
	caFile := fs.String("tls-ca", "", "CA bundle (PEM) client certificates must chain to (mutual TLS)")
	maxConns := fs.Int("max-conns", nbd.DefaultMaxConns, "connections served at once; more are refused with \"too many connections\" (each may hold 64 MiB of requests)")
	verbose := fs.Bool("v", false, "log connection events and backend errors to stderr")
	const header = "usage: nbd-server -listen unix:PATH|tcp:HOST:PORT (-file IMG | -mirror LEG1,LEG2 -log LOG | -record DEV -log LOG) [flags]\n\n"
	const footer = `
Attach: nbd-client -u PATH /dev/nbd0 (detach: nbd-client -d /dev/nbd0),
        qemu-io -f raw nbd+unix:///?socket=PATH, nbdinfo nbd+unix:///?socket=PATH.
Control: "mark NAME" (-record) and "status", one per line, on the -control socket;
         each answered by "ok ..." or "error: ...".
SIGINT/SIGTERM: stop accepting, finish requests, flush, close the log, remove sockets.
`
	if err := cli.Parse(fs, args, out, header, footer); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{Err: err}
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments %q", fs.Args())
	}
	if *listen == "" {
		return usagef("-listen is required (unix:PATH or tcp:HOST:PORT)")
	}
	ep, err := parseEndpoint("listen", *listen, true)
	if err != nil {
		return err
	}
	var cep endpoint
	if *control != "" {
		if cep, err = parseEndpoint("control", *control, false); err != nil {
			return err
		}
	}
	n := 0
	for _, s := range []string{*file, *mirrorLegs, *record} {
		if s != "" {
			n++
		}
	}
	if n != 1 {
		return usagef("give exactly one of -file, -mirror and -record")
	}
	if (*mirrorLegs != "" || *record != "") && *logPath == "" {
		return usagef("-mirror and -record need -log")
	}
	if *file != "" && *logPath != "" {
		return usagef("-log goes with -mirror or -record, not -file")
	}
	var legs []string
	if *mirrorLegs != "" {
		legs = strings.Split(*mirrorLegs, ",")
		if len(legs) < 2 || len(legs) > 32 {
			return usagef("-mirror %q: want 2 to 32 comma-separated legs", *mirrorLegs)
		}
		for _, l := range legs {
			if l == "" {
				return usagef("-mirror %q: empty leg name", *mirrorLegs)
			}
		}
		if r := int64(region); r < 1024 || r&(r-1) != 0 {
			return usagef("-region %d bytes: want a power of two of at least 1KiB", r)
		}
	}
	if *maxConns < 1 {
		return usagef("-max-conns %d: want at least 1 connection", *maxConns)
	}
	if s := *sector; s < 512 || s > 4096 || s&(s-1) != 0 {
		return usagef("-sector %d bytes: want 512, 1024, 2048 or 4096", s)
	}
	if size < 0 {
		return usagef("-size %d bytes: must not be negative", int64(size))
	}
	tlsCfg, err := tlsConfig(*certFile, *keyFile, *caFile)
	if err != nil {
		return err
	}
	if ep.network == "tcp" && !ep.loopback() && tlsCfg == nil {
		return usagef("-listen %s is not a loopback address: TLS is required (-tls-cert, -tls-key, -tls-ca)", *listen)
	}

	l, err := ep.listen()
	if err != nil {
		return err
	}
	defer l.Close()
	var cl net.Listener
	if *control != "" {
		if cl, err = cep.listen(); err != nil {
			return err
		}
		defer cl.Close()
	}

	var b *served
	switch {
	case *file != "":
		b, err = serveFile(*file, int64(size))
	case *record != "":
		b, err = serveRecord(*record, *logPath, int64(size), *sector, *overwrite)
	default:
		b, err = serveMirror(legs, *logPath, int64(size), int64(region), out)
	}
	if err != nil {
		return err
	}
	b.export.Name = *name
	o := nbd.Options{TLS: tlsCfg, MaxConns: *maxConns}
	if *verbose {
		o.Logf = func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
	}
	srv, err := nbd.NewServer(o, b.export)
	if err != nil {
		return errors.Join(err, b.close())
	}
	var ctl *controlServer
	if cl != nil {
		ctl = newControlServer(cl, b)
	}
	if ep.network == "tcp" {
		ep.addr = l.Addr().String() // the port chosen for :0
	}
	printAttach(out, ep, b, cl, tlsCfg != nil)
	if onReady != nil {
		var ca net.Addr
		if cl != nil {
			ca = cl.Addr()
		}
		onReady(l.Addr(), ca)
	}

	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	var serveErr error
	select {
	case <-ctx.Done():
		fmt.Fprintf(out, "nbd-server: stopping: finishing requests in flight\n")
	case serveErr = <-served:
	}
	err = srv.Close()
	if serveErr == nil {
		serveErr = <-served
	}
	if errors.Is(serveErr, nbd.ErrServerClosed) {
		serveErr = nil
	}
	if ctl != nil {
		err = errors.Join(err, ctl.close())
	}
	err = errors.Join(serveErr, err, b.close())
	st := srv.Stats()
	refused := ""
	if st.Refused > 0 {
		refused = fmt.Sprintf(" (%d refused: -max-conns)", st.Refused)
	}
	fmt.Fprintf(out, "nbd-server: stopped after %d connection(s)%s: %d reads, %d writes (%d FUA), %d flushes, %d trims, %d write-zeroes, %d errors\n",
		st.Connections, refused, st.Reads, st.Writes, st.FUAWrites, st.Flushes, st.Trims, st.WriteZeroes, st.Errors)
	return err
}

func printAttach(out io.Writer, ep endpoint, b *served, cl net.Listener, withTLS bool) {
	fmt.Fprintf(out, "nbd-server: serving %s, %d bytes, export %q\n", b.what, b.export.Size, b.export.Name)
	if ep.network == "unix" {
		fmt.Fprintf(out, "nbd-server: listening on unix:%s\n", ep.addr)
		fmt.Fprintf(out, "  attach to Linux: nbd-client -u %s /dev/nbd0   (detach: nbd-client -d /dev/nbd0)\n", ep.addr)
		fmt.Fprintf(out, "  qemu:            qemu-io -f raw 'nbd+unix:///%s?socket=%s'\n", b.export.Name, ep.addr)
		fmt.Fprintf(out, "  libnbd:          nbdinfo 'nbd+unix:///%s?socket=%s'\n", b.export.Name, ep.addr)
	} else {
		host, port, _ := net.SplitHostPort(ep.addr)
		fmt.Fprintf(out, "nbd-server: listening on tcp:%s\n", ep.addr)
		fmt.Fprintf(out, "  attach to Linux: nbd-client %s %s /dev/nbd0 -N '%s'\n", host, port, b.export.Name)
		fmt.Fprintf(out, "  qemu:            qemu-io -f raw nbd://%s/%s\n", ep.addr, b.export.Name)
	}
	if withTLS {
		fmt.Fprintf(out, "  TLS required: clients must use STARTTLS (nbd-client -certfile/-keyfile/-cacertfile; qemu --object tls-creds-x509)\n")
	}
	if cl != nil {
		fmt.Fprintf(out, "nbd-server: control socket %s (\"mark NAME\", \"status\")\n", cl.Addr())
	}
}
