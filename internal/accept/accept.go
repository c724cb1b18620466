// Package accept holds what the project's servers (the remote log server
// and the NBD server) share about accepting connections: which Accept
// errors are transient, and how long to wait before trying again. Its
// functions are safe for concurrent use; a Backoff is not.
package accept

import (
	"errors"
	"net"
	"syscall"
	"time"
)

// Transient reports whether an Accept error is worth retrying: a timeout,
// the process or system out of file descriptors or memory, or a
// connection aborted before it was accepted. A server that returns on
// these stops serving every later client because of one bad moment.
func Transient(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// Backoff is the wait before the next Accept after transient failures:
// 5 ms, doubling up to 1 s; Reset after a successful Accept. The zero
// value is ready to use. Not safe for concurrent use.
type Backoff struct{ d time.Duration }

// Next returns the wait before the next attempt.
func (b *Backoff) Next() time.Duration {
	b.d = min(max(2*b.d, 5*time.Millisecond), time.Second)
	return b.d
}

// Reset starts the next run of failures at 5 ms again.
func (b *Backoff) Reset() { b.d = 0 }
