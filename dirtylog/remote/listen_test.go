package remote

import (
	"context"
	"crypto/sha256"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dmlog/dmlog/dirtylog"
	"github.com/dmlog/dmlog/internal/unixsock"
)

// TestListenUnixNeverDestroys: a path given by mistake keeps what it
// holds. A regular file (8 MiB of data) and a directory are refused and
// left byte for byte as they were; a live server's socket is "address in
// use" and that server keeps answering; only a stale socket is replaced.
func TestListenUnixNeverDestroys(t *testing.T) {
	checkGoroutines(t)
	dir := filepath.Dir(sockPath(t))

	file := filepath.Join(dir, "data")
	data := make([]byte, 8<<20)
	for i := range data {
		data[i] = byte(i*7 + i>>13)
	}
	require.NoError(t, os.WriteFile(file, data, 0o600))
	_, err := ListenUnix(file)
	require.ErrorIs(t, err, unixsock.ErrNotSocket)
	require.ErrorContains(t, err, file)
	got, err := os.ReadFile(file)
	require.NoError(t, err)
	require.Equal(t, sha256.Sum256(data), sha256.Sum256(got), "the regular file at the socket path changed")

	sub := filepath.Join(dir, "dir")
	require.NoError(t, os.Mkdir(sub, 0o700))
	_, err = ListenUnix(sub)
	require.ErrorIs(t, err, unixsock.ErrNotSocket)
	fi, err := os.Stat(sub)
	require.NoError(t, err)
	require.True(t, fi.IsDir())

	// A live server: the second listener is refused and the first one
	// still answers at its path.
	ts := startServer(t, ServerOptions{})
	_, err = ListenUnix(ts.path)
	require.ErrorIs(t, err, syscall.EADDRINUSE)
	require.ErrorContains(t, err, ts.path)
	c := ts.dial(t, coreOpts("live", 1, "nosync"))
	c.MarkRegion(1)
	require.NoError(t, c.Flush(context.Background()))
	require.NoError(t, c.Close())

	// A stale socket (its server is gone, the file stayed) is replaced.
	stale := filepath.Join(dir, "stale")
	l, err := net.Listen("unix", stale)
	require.NoError(t, err)
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	require.NoError(t, l.Close())
	fi, err = os.Lstat(stale)
	require.NoError(t, err)
	require.Equal(t, os.ModeSocket, fi.Mode().Type())
	l, err = ListenUnix(stale)
	require.NoError(t, err, "a stale socket is replaced")
	require.NoError(t, l.Close())
}

// TestServerSecondClose: the os.File convention for Server too.
func TestServerSecondClose(t *testing.T) {
	s := NewServer(ServerOptions{})
	require.NoError(t, s.Close())
	err := s.Close()
	require.ErrorIs(t, err, os.ErrClosed)
	require.ErrorIs(t, err, ErrServerClosed)
}

// TestSecondServerOnSameLogFiles: two servers whose Open resolves names to
// the same files (two logservers on one -log-dir): the second cannot
// construct a log on a file the first one hosts (the disk log's flock),
// says so, and the file is unchanged.
func TestSecondServerOnSameLogFiles(t *testing.T) {
	checkGoroutines(t)
	dir := t.TempDir()
	open := func(name string) (dirtylog.Device, error) {
		return os.OpenFile(filepath.Join(dir, name), os.O_RDWR|os.O_CREATE, 0o600)
	}
	disk := ClientOptions{UUID: "vol", Node: 1, DeviceSize: tDevice, Args: []string{"clustered-disk", "log0", tRS}}
	first := startServer(t, ServerOptions{Open: open})
	second := startServer(t, ServerOptions{Open: open})
	a := first.dial(t, disk)
	defer a.Close()
	a.MarkRegion(7)
	require.NoError(t, a.Flush(context.Background()))
	before, err := os.ReadFile(filepath.Join(dir, "log0"))
	require.NoError(t, err)

	_, err = Dial(context.Background(), "unix", second.path, disk)
	require.Error(t, err)
	require.ErrorContains(t, err, "in use")
	require.ErrorContains(t, err, "log0")
	after, err := os.ReadFile(filepath.Join(dir, "log0"))
	require.NoError(t, err)
	require.Equal(t, sha256.Sum256(before), sha256.Sum256(after), "the refused server wrote the log file")
	clean, err := a.IsClean(context.Background(), 7)
	require.NoError(t, err)
	require.False(t, clean, "the first server's log is intact")
}
