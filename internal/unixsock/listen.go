// Package unixsock listens on a Unix socket path without destroying what
// is there: a missing path is created, a stale socket (a socket file no
// server answers) is replaced, a live socket is "address in use", and
// anything else (a regular file, a directory) is an error naming the path.
// The socket has mode 0600 from the moment it appears, and closing the
// listener removes the path only while it is still this listener's socket.
package unixsock

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// ErrInUse is wrapped when a live server already answers at the path.
// It also matches syscall.EADDRINUSE.
var ErrInUse = fmt.Errorf("address in use: a server answers there: %w", syscall.EADDRINUSE)

// ErrNotSocket is wrapped when the path exists and is not a socket.
var ErrNotSocket = errors.New("exists and is not a socket; refusing to replace it")

// Listen listens on a Unix socket at path (see the package doc for what
// it does with an existing path). prefix names the caller in errors
// ("remote", "nbd-server").
func Listen(prefix, path string) (net.Listener, error) {
	if err := clearStale(path); err != nil {
		return nil, fmt.Errorf("%s: listen on %s: %w", prefix, path, err)
	}
	dir, err := os.MkdirTemp(filepath.Dir(path), ".dmlog-sock-")
	if err != nil {
		return nil, fmt.Errorf("%s: listen on %s: %w", prefix, path, err)
	}
	defer os.RemoveAll(dir)
	tmp := filepath.Join(dir, "s")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("%s: listen on %s: %w", prefix, path, err)
	}
	l.SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("%s: securing socket %s: %w", prefix, tmp, err)
	}
	// A hard link fails if path appeared meanwhile: never a takeover.
	if err := os.Link(tmp, path); err != nil {
		l.Close()
		if errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("%s: listen on %s: %w", prefix, path, ErrInUse)
		}
		return nil, fmt.Errorf("%s: placing socket at %s: %w", prefix, path, err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("%s: listen on %s: %w", prefix, path, err)
	}
	return &listener{UnixListener: l, path: path, fi: fi}, nil
}

// clearStale removes path if it is a socket nobody answers, and fails if
// it is a live socket or not a socket at all.
func clearStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode().Type() != os.ModeSocket {
		return fmt.Errorf("%s (%s): %w", path, kind(fi), ErrNotSocket)
	}
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err == nil {
		c.Close()
		return ErrInUse
	}
	if errors.Is(err, syscall.EAGAIN) {
		// A server whose accept queue is full: live, only busy.
		return ErrInUse
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("probing existing socket: %w", err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing stale socket: %w", err)
	}
	return nil
}

func kind(fi os.FileInfo) string {
	switch t := fi.Mode().Type(); {
	case t == 0:
		return fmt.Sprintf("a regular file of %d bytes", fi.Size())
	case t&os.ModeDir != 0:
		return "a directory"
	case t&os.ModeSymlink != 0:
		return "a symbolic link"
	default:
		return "mode " + t.String()
	}
}

type listener struct {
	*net.UnixListener
	path string
	fi   os.FileInfo
	once sync.Once
}

func (l *listener) Addr() net.Addr { return &net.UnixAddr{Name: l.path, Net: "unix"} }

// Close stops listening and removes the socket file if it is still ours.
func (l *listener) Close() error {
	err := l.UnixListener.Close()
	l.once.Do(func() {
		if fi, err := os.Lstat(l.path); err == nil && os.SameFile(fi, l.fi) {
			os.Remove(l.path)
		}
	})
	return err
}
