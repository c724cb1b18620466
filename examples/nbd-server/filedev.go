package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"github.com/dmlog/dmlog/internal/flock"
)

// Linux fallocate modes.
const (
	fallocKeepSize  = 0x01
	fallocPunchHole = 0x02
)

// fileDev is a file or block device opened and locked by this command. It
// adds Discard (a punched hole, which reads back as zeroes; zeroes are
// written where the file system cannot punch) to *os.File's ReadAt,
// WriteAt and Sync. It is safe for concurrent use.
type fileDev struct {
	*os.File
	fd   int
	size int64
}

var zeroes [1 << 20]byte

func (f *fileDev) Discard(off, n int64) error {
	err := syscall.Fallocate(f.fd, fallocPunchHole|fallocKeepSize, off, n)
	if err == nil || !(errors.Is(err, syscall.EOPNOTSUPP) || errors.Is(err, syscall.ENOTSUP) || errors.Is(err, syscall.ENODEV)) {
		return err
	}
	for n > 0 {
		c := min(n, int64(len(zeroes)))
		if _, err := f.WriteAt(zeroes[:c], off); err != nil {
			return err
		}
		off, n = off+c, n-c
	}
	return nil
}

// openDev opens path read-write and locks it; what names its role in
// errors. A missing path is created with size bytes if size > 0 (created
// reports that), else it is an error. An existing file keeps its size; if
// size > 0 it must be that size.
func openDev(path, what string, size int64) (dev *fileDev, created bool, err error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) && size > 0 {
		f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		created = err == nil
	}
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, false, fmt.Errorf("%s %s does not exist (give -size to create it)", what, path)
		}
		return nil, false, fmt.Errorf("%s: %w", what, err)
	}
	fail := func(err error) (*fileDev, bool, error) {
		f.Close()
		if created {
			os.Remove(path)
		}
		return nil, false, err
	}
	if err := flock.Lock(f, what); err != nil {
		return fail(err)
	}
	if created {
		if err := f.Truncate(size); err != nil {
			return fail(fmt.Errorf("%s %s: sizing to %d bytes: %w", what, path, size, err))
		}
	}
	n, err := f.Seek(0, io.SeekEnd) // a block device's size too
	if err != nil {
		return fail(fmt.Errorf("%s %s: learning its size: %w", what, path, err))
	}
	if size > 0 && n != size {
		return fail(fmt.Errorf("%s %s is %d bytes, but -size says %d bytes", what, path, n, size))
	}
	if n == 0 {
		return fail(fmt.Errorf("%s %s is empty (0 bytes)", what, path))
	}
	return &fileDev{File: f, fd: int(f.Fd()), size: n}, created, nil
}
