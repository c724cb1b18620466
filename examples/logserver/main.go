// Command logserver serves clustered dirty-region logs to dmlog clients
// (remote.Client, or any peer speaking the framed userspace-log protocol).
//
//	logserver -listen unix:/run/dmlog/log.sock -log-dir /var/lib/dmlog
//	logserver -listen tcp:0.0.0.0:7450 -tls-cert srv.pem -tls-key srv.key -tls-ca ca.pem
//
// A Unix socket is created with mode 0600. TCP requires mutual TLS 1.3:
// clients must present a certificate signed by the -tls-ca bundle.
// clustered-disk logs live in files under -log-dir, one per device name a
// client constructs the log with (plain names only: a client cannot
// reach files outside the directory); each file is created, or grown, to
// -log-size bytes. clustered-core logs need no files.
//
// Events (connections, joins, deaths, refused peers) are logged with
// log/slog to stderr. SIGINT or SIGTERM shuts the server down cleanly:
// connections are closed and every disk log is flushed.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/dmlog/dmlog/dirtylog"
	"github.com/dmlog/dmlog/dirtylog/remote"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr, nil); err != nil {
		fmt.Fprintln(os.Stderr, "logserver:", err)
		os.Exit(1)
	}
}

var deviceName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._:-]*$`)

// run parses args, serves until ctx is done, then shuts down. ready, if
// set, receives the listening address.
func run(ctx context.Context, args []string, stderr io.Writer, ready chan<- string) error {
	fs := flag.NewFlagSet("logserver", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "", "where to listen: unix:/path or tcp:host:port")
	certFile := fs.String("tls-cert", "", "server certificate (PEM), required for tcp")
	keyFile := fs.String("tls-key", "", "server private key (PEM), required for tcp")
	caFile := fs.String("tls-ca", "", "CA bundle (PEM) that client certificates must chain to, required for tcp")
	deadAfter := fs.Duration("dead-after", remote.DefaultDeadAfter, "declare a node dead after it has been disconnected this long without suspending (negative: never)")
	logDir := fs.String("log-dir", "", "directory holding clustered-disk log files (none: clustered-disk is refused)")
	logSize := fs.Int64("log-size", 1<<20, "size of a clustered-disk log file")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lv}))

	opts := remote.ServerOptions{DeadAfter: *deadAfter, Logger: logger}
	if *deadAfter == 0 {
		return errors.New("-dead-after must be positive, or negative for never")
	}
	if *logSize < 4096 {
		return fmt.Errorf("-log-size %d: want at least 4096 bytes (a header and a bitmap block)", *logSize)
	}
	if *logDir != "" {
		dir, size := *logDir, *logSize
		opts.Open = func(name string) (dirtylog.Device, error) {
			if !deviceName.MatchString(name) {
				return nil, fmt.Errorf("log device name %q is not a plain file name", name)
			}
			f, err := os.OpenFile(filepath.Join(dir, name), os.O_RDWR|os.O_CREATE, 0o600)
			if err != nil {
				return nil, err
			}
			if fi, err := f.Stat(); err == nil && fi.Size() < size {
				if err := f.Truncate(size); err != nil {
					f.Close()
					return nil, err
				}
			}
			return f, nil
		}
	}

	network, addr, ok := strings.Cut(*listen, ":")
	var l net.Listener
	var err error
	switch {
	case !ok || addr == "":
		return fmt.Errorf("-listen %q: want unix:/path or tcp:host:port", *listen)
	case network == "unix":
		l, err = remote.ListenUnix(addr)
	case network == "tcp":
		if *certFile == "" || *keyFile == "" || *caFile == "" {
			return errors.New("tcp needs -tls-cert, -tls-key and -tls-ca (mutual TLS)")
		}
		cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
		if err != nil {
			return fmt.Errorf("loading the server certificate: %w", err)
		}
		pem, err := os.ReadFile(*caFile)
		if err != nil {
			return fmt.Errorf("reading -tls-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("-tls-ca %s holds no PEM certificate", *caFile)
		}
		opts.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool}
		l, err = net.Listen("tcp", addr)
		if err != nil {
			return err
		}
	default:
		return fmt.Errorf("-listen %q: unknown network %q", *listen, network)
	}
	if err != nil {
		return err
	}

	srv := remote.NewServer(opts)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	if ready != nil {
		ready <- l.Addr().String()
	}
	select {
	case <-ctx.Done():
		logger.Info("shutting down")
	case err := <-done:
		srv.Close()
		return err
	}
	start := time.Now()
	err = srv.Close()
	<-done
	logger.Info("stopped", "took", time.Since(start).Round(time.Millisecond), "err", err)
	return err
}
