// Package flock claims files exclusively with an advisory lock (flock(2)),
// as the kernel claims the devices of a dm target: a second opener of the
// same log, leg or image, in this process or another, gets ErrInUse
// instead of silently sharing it. The lock belongs to the open file
// description and is released when the file is closed (or by Unlock).
package flock

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// ErrInUse is wrapped by Lock's error when another open file holds the lock.
var ErrInUse = errors.New("in use by another opener")

// Lock takes an exclusive, non-blocking flock on f. what names the file's
// role in the error ("log device", "leg 1"). Files that cannot be locked
// (a file system without flock support) are accepted: the lock is
// advisory and only protects dmlog's own openers from each other.
func Lock(f *os.File, what string) error {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, syscall.EWOULDBLOCK):
		return fmt.Errorf("%s %s: %w (another dmlog program or Open holds its lock)", what, f.Name(), ErrInUse)
	case errors.Is(err, syscall.ENOTSUP), errors.Is(err, syscall.EINVAL), errors.Is(err, syscall.ENOLCK):
		return nil
	}
	return fmt.Errorf("%s %s: locking: %w", what, f.Name(), err)
}

// Unlock releases a lock taken by Lock.
func Unlock(f *os.File) error {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
}
