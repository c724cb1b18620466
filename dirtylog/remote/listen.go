package remote

import (
	"net"

	"github.com/dmlog/dmlog/internal/unixsock"
)

// ListenUnix listens on a Unix socket at path whose file has mode 0600
// from the moment it appears there. It never destroys what is at path: a
// stale socket (one no server answers) is replaced, a live one is an
// "address in use" error (errors.Is syscall.EADDRINUSE), and a regular
// file, a directory or anything else is an error naming the path.
// Closing the listener removes path while it is still this listener's
// socket.
func ListenUnix(path string) (net.Listener, error) {
	return unixsock.Listen("remote", path)
}
