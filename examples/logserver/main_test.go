package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dmlog/dmlog/dirtylog"
	"github.com/dmlog/dmlog/dirtylog/remote"
	"github.com/dmlog/dmlog/internal/fixture"
)

// syncBuf collects a command's output while the test reads it.
type syncBuf = fixture.SyncBuffer

func TestServeUnixDiskAndShutDown(t *testing.T) {
	dir, err := os.MkdirTemp("", "lsrv")
	require.NoError(t, err)
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "s")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr syncBuf
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-listen", "unix:" + sock, "-log-dir", dir, "-dead-after", "1s"}, io.Discard, &stderr, ready)
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatal(err)
	}
	fi, err := os.Stat(sock)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	c, err := remote.Dial(ctx, "unix", sock, remote.ClientOptions{UUID: "vol", Node: 1, DeviceSize: 1 << 30,
		Args: []string{"clustered-disk", "vol.log", "1024", "nosync"}})
	require.NoError(t, err)
	c.MarkRegion(9)
	require.NoError(t, c.Flush(ctx))
	_, err = remote.Dial(ctx, "unix", sock, remote.ClientOptions{UUID: "evil", Node: 1, DeviceSize: 1 << 30,
		Args: []string{"clustered-disk", "../escape", "1024"}})
	require.Error(t, err, "a device name outside -log-dir was accepted")

	// An existing file that is too short for the log is refused, not
	// grown or overwritten.
	junk := bytes.Repeat([]byte("user data "), 100) // 1000 bytes; the log needs 1280
	require.NoError(t, os.WriteFile(filepath.Join(dir, "data.log"), junk, 0o600))
	_, err = remote.Dial(ctx, "unix", sock, remote.ClientOptions{UUID: "data", Node: 1, DeviceSize: 1 << 30,
		Args: []string{"clustered-disk", "data.log", "1024"}})
	require.Error(t, err, "a short file of data was taken as a log")
	got, err := os.ReadFile(filepath.Join(dir, "data.log"))
	require.NoError(t, err)
	require.Equal(t, junk, got, "the short file of data was changed")

	f, err := os.Open(filepath.Join(dir, "vol.log"))
	require.NoError(t, err)
	defer f.Close()
	img, err := dirtylog.ReadDiskImage(f, 1<<20)
	require.NoError(t, err)
	require.Equal(t, []dirtylog.Region{9}, img.Dirty())

	cancel() // SIGINT/SIGTERM
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("no shutdown")
	}
	c.Close()
	_, err = os.Stat(sock)
	require.True(t, os.IsNotExist(err), "socket left behind")
	require.Contains(t, stderr.String(), "node joined")
	require.Contains(t, stderr.String(), "stopped")
}

// runRefused runs the server with args that it must refuse, under a
// deadline: a server that starts instead is stopped and the test fails
// at once rather than hanging.
func runRefused(t *testing.T, args []string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, io.Discard, io.Discard, ready) }()
	select {
	case <-ready:
		cancel()
		<-done
		t.Fatalf("%q: the server started; want it refused", args)
		return nil
	case err := <-done:
		return err
	}
}

// Bad flags and values are usage errors (exit 2), each one line; -h is
// flag.ErrHelp (exit 0) with the usage on stdout.
func TestFlags(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	require.NoError(t, os.WriteFile(file, []byte("x"), 0o600))
	// Never a path outside the test's directory: a value wrongly accepted
	// would start a server there.
	sock := "unix:" + filepath.Join(dir, "s")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{}, `-listen "": want unix:/path or tcp:host:port`},
		{[]string{"-listen", "udp:x"}, `unknown network "udp"`},
		{[]string{"-listen", "tcp:127.0.0.1:0"}, "needs -tls-cert, -tls-key and -tls-ca"},
		{[]string{"-listen", sock, "-dead-after", "0s"}, "-dead-after 0s"},
		{[]string{"-listen", sock, "-log-size", "0"}, "-log-size 0B: want at least 4KiB"},
		{[]string{"-listen", sock, "-log-size", "lots"}, `invalid value "lots" for flag -log-size`},
		{[]string{"-listen", sock, "-log-level", "loud"}, `-log-level "loud"`},
		{[]string{"-listen", sock, "extra"}, "unexpected arguments"},
		{[]string{"-nosuch"}, "flag provided but not defined: -nosuch"},
		{[]string{"-listen", sock, "-log-dir", filepath.Join(dir, "missing")}, "-log-dir " + filepath.Join(dir, "missing") + ": no such directory"},
		{[]string{"-listen", sock, "-log-dir", file}, "-log-dir " + file + ": not a directory"},
	} {
		err := runRefused(t, c.args)
		var ue usageError
		require.True(t, errors.As(err, &ue), "%q: %v is not a usage error", c.args, err)
		require.ErrorContains(t, err, c.want, "%q", c.args)
		require.NotContains(t, err.Error(), "\n")
	}
	// A certificate that cannot be loaded is an error, not a usage error.
	err := run(context.Background(), []string{"-listen", "tcp:127.0.0.1:0", "-tls-cert", "a", "-tls-key", "b", "-tls-ca", "c"}, io.Discard, io.Discard, nil)
	var ue usageError
	require.Error(t, err)
	require.False(t, errors.As(err, &ue), "%v", err)

	var usage bytes.Buffer
	err = run(context.Background(), []string{"-h"}, &usage, io.Discard, nil)
	require.ErrorIs(t, err, flag.ErrHelp)
	require.Contains(t, usage.String(), "-log-dir")
}

// A second server on the same -log-dir fails with a clear "in use" error
// while the first runs; once the first stops, the directory is free.
func TestSecondServerOnLogDir(t *testing.T) {
	dir, err := os.MkdirTemp("", "lsrv")
	require.NoError(t, err)
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-listen", "unix:" + filepath.Join(dir, "a.sock"), "-log-dir", dir}, io.Discard, io.Discard, ready)
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatal(err)
	}
	// The second server runs under a deadline: if it wrongly starts, it
	// is stopped and the test fails at once rather than hanging.
	ctxB, cancelB := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancelB()
	readyB := make(chan string, 1)
	doneB := make(chan error, 1)
	go func() {
		doneB <- run(ctxB, []string{"-listen", "unix:" + filepath.Join(dir, "b.sock"), "-log-dir", dir}, io.Discard, io.Discard, readyB)
	}()
	select {
	case <-readyB:
		cancelB()
		<-doneB
		t.Fatal("a second server started on a -log-dir the first one holds")
	case err = <-doneB:
	}
	require.ErrorContains(t, err, "in use")
	require.ErrorContains(t, err, dir)
	require.False(t, strings.Contains(err.Error(), "\n"))
	_, err = os.Stat(filepath.Join(dir, "b.sock"))
	require.True(t, os.IsNotExist(err), "the refused server left a socket")
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("no shutdown")
	}
	ctx2, cancel2 := context.WithCancel(context.Background())
	ready2 := make(chan string, 1)
	done2 := make(chan error, 1)
	go func() {
		done2 <- run(ctx2, []string{"-listen", "unix:" + filepath.Join(dir, "b.sock"), "-log-dir", dir}, io.Discard, io.Discard, ready2)
	}()
	select {
	case <-ready2:
	case err := <-done2:
		t.Fatalf("the directory is still locked after the first server stopped: %v", err)
	}
	cancel2()
	select {
	case err := <-done2:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("no shutdown")
	}
}
