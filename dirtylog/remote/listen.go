package remote

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
)

// ListenUnix listens on a Unix socket at path whose file has mode 0600
// from the moment it appears there: the socket is bound in a private
// (0700) temporary directory next to path, so nobody can connect before
// it is restricted, then renamed into place (an existing socket file at
// path is replaced). Closing the listener removes path.
func ListenUnix(path string) (net.Listener, error) {
	dir, err := os.MkdirTemp(filepath.Dir(path), ".logserver-")
	if err != nil {
		return nil, fmt.Errorf("remote: listen on %s: %w", path, err)
	}
	defer os.RemoveAll(dir)
	tmp := filepath.Join(dir, "s")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("remote: listen on %s: %w", path, err)
	}
	l.SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("remote: securing socket %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		l.Close()
		return nil, fmt.Errorf("remote: placing socket at %s: %w", path, err)
	}
	return &unixListener{UnixListener: l, path: path}, nil
}

type unixListener struct {
	*net.UnixListener
	path string
	once sync.Once
}

func (l *unixListener) Addr() net.Addr { return &net.UnixAddr{Name: l.path, Net: "unix"} }

func (l *unixListener) Close() error {
	err := l.UnixListener.Close()
	l.once.Do(func() { os.Remove(l.path) })
	return err
}
