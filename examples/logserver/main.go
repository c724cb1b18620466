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
// reach files outside the directory); a new file is created with -log-size
// bytes (e.g. 1MiB; a bare number is bytes), an existing one is used as it
// is and never grown (the disk log refuses what is not a log). clustered-core logs
// need no files. -log-dir must exist; the server holds an exclusive lock
// (flock) on it, so a second server on the same directory fails at start.
//
// Events (connections, joins, deaths, refused peers) are logged with
// log/slog to stderr. SIGINT or SIGTERM shuts the server down cleanly:
// connections are closed and every disk log is flushed.
//
// Exit status: 0 after a clean shutdown, 1 on an error, 2 for a bad flag or
// value; -h prints the usage and exits 0.
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
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/dmlog/dmlog/dirtylog"
	"github.com/dmlog/dmlog/dirtylog/remote"
	"github.com/dmlog/dmlog/internal/cli"
	"github.com/dmlog/dmlog/internal/flock"
	"github.com/dmlog/dmlog/internal/units"
)

func main() {
	ctx, stop := cli.SignalContext()
	defer stop()
	cli.Exit("logserver", run(ctx, os.Args[1:], os.Stdout, os.Stderr, nil))
}

var deviceName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._:-]*$`)

// usageError is a bad flag or value: exit status 2.
type usageError = cli.UsageError

var usagef = cli.Usagef

// run parses args, serves until ctx is done, then shuts down. ready, if
// set, receives the listening address. -h prints the usage to stdout and
// returns flag.ErrHelp; a bad flag or value returns a usageError.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, ready chan<- string) error {
	fs := flag.NewFlagSet("logserver", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	listen := fs.String("listen", "", "where to listen: unix:/path or tcp:host:port")
	certFile := fs.String("tls-cert", "", "server certificate (PEM), required for tcp")
	keyFile := fs.String("tls-key", "", "server private key (PEM), required for tcp")
	caFile := fs.String("tls-ca", "", "CA bundle (PEM) that client certificates must chain to, required for tcp")
	deadAfter := fs.Duration("dead-after", remote.DefaultDeadAfter, "declare a node dead after it has been disconnected this long without suspending (negative: never)")
	logDir := fs.String("log-dir", "", "existing directory holding clustered-disk log files, locked against a second server (none: clustered-disk is refused)")
	logSizeV := units.Size(1 << 20)
	fs.Var(&logSizeV, "log-size", "size of a clustered-disk log file (e.g. 1MiB; a bare number is bytes; at least 4KiB)")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	if err := cli.Parse(fs, args, stdout, "usage: logserver -listen unix:PATH|tcp:HOST:PORT [flags]\n\nServe clustered dirty-region logs to dmlog clients.\n\n", ""); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{Err: err}
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments %q", fs.Args())
	}
	logSize := int64(logSizeV)
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		return usagef("-log-level %q: want debug, info, warn or error", *level)
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lv}))

	opts := remote.ServerOptions{DeadAfter: *deadAfter, Logger: logger}
	if *deadAfter == 0 {
		return usagef("-dead-after 0s: want a positive duration, or negative for never")
	}
	if logSize < 4096 {
		return usagef("-log-size %s: want at least 4KiB (a header and a bitmap block)", units.FormatSize(logSize))
	}
	network, addr, ok := strings.Cut(*listen, ":")
	switch {
	case !ok || addr == "":
		return usagef("-listen %q: want unix:/path or tcp:host:port", *listen)
	case network != "unix" && network != "tcp":
		return usagef("-listen %q: unknown network %q (want unix or tcp)", *listen, network)
	case network == "tcp" && (*certFile == "" || *keyFile == "" || *caFile == ""):
		return usagef("-listen %s needs -tls-cert, -tls-key and -tls-ca (mutual TLS)", *listen)
	}
	if *logDir != "" {
		lock, err := lockDir(*logDir)
		if err != nil {
			return err
		}
		defer lock.Close()
		dir, size := *logDir, logSize
		opts.Open = func(name string) (dirtylog.Device, error) {
			if !deviceName.MatchString(name) {
				return nil, fmt.Errorf("log device name %q is not a plain file name", name)
			}
			f, err := os.OpenFile(filepath.Join(dir, name), os.O_RDWR|os.O_CREATE, 0o600)
			if err != nil {
				return nil, err
			}
			// Only a new (empty) file is sized here: an existing one is
			// handed to the disk log as it is, which refuses what it
			// cannot prove is a log of its own.
			if fi, err := f.Stat(); err == nil && fi.Size() == 0 {
				if err := f.Truncate(size); err != nil {
					f.Close()
					return nil, err
				}
			}
			return f, nil
		}
	}

	var l net.Listener
	var err error
	switch network {
	case "unix":
		l, err = remote.ListenUnix(addr)
	case "tcp":
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
	}
	if err != nil {
		return fmt.Errorf("-listen %s: %w", *listen, err)
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

// lockDir checks that dir is an existing directory and takes an exclusive
// lock on it, held until the returned file is closed, so that a second
// server on the same -log-dir fails instead of sharing its log files.
func lockDir(dir string) (*os.File, error) {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil, usagef("-log-dir %s: no such directory (create it first)", dir)
	case err != nil:
		return nil, fmt.Errorf("-log-dir: %w", err)
	case !fi.IsDir():
		return nil, usagef("-log-dir %s: not a directory", dir)
	}
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("-log-dir: %w", err)
	}
	if err := flock.Lock(f, "-log-dir"); err != nil {
		f.Close()
		if errors.Is(err, flock.ErrInUse) {
			return nil, fmt.Errorf("%w: is another logserver running on it?", err)
		}
		return nil, err
	}
	return f, nil
}
