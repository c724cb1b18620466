package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dmlog/dmlog/dirtylog"
	"github.com/dmlog/dmlog/dirtylog/remote"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

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
		done <- run(ctx, []string{"-listen", "unix:" + sock, "-log-dir", dir, "-dead-after", "1s"}, &stderr, ready)
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

func TestFlags(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"-listen", "udp:x"},
		{"-listen", "tcp:127.0.0.1:0"},
		{"-listen", "tcp:127.0.0.1:0", "-tls-cert", "a", "-tls-key", "b", "-tls-ca", "c"},
		{"-listen", "unix:/x", "-dead-after", "0s"},
		{"-listen", "unix:/x", "-log-size", "0"},
		{"-listen", "unix:/x", "extra"},
	} {
		var stderr syncBuf
		require.Error(t, run(context.Background(), args, &stderr, nil), "%q", args)
	}
}
