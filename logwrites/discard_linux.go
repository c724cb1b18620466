//go:build linux

package logwrites

import (
	"errors"
	"os"
	"syscall"
)

// fallocate(2) mode bits.
const (
	fallocKeepSize  = 0x1
	fallocPunchHole = 0x2
)

func punchHoleSys(f *os.File, off, n int64) error {
	sc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := sc.Control(func(fd uintptr) {
		for {
			ferr = syscall.Fallocate(int(fd), fallocPunchHole|fallocKeepSize, off, n)
			if !errors.Is(ferr, syscall.EINTR) {
				return
			}
		}
	}); err != nil {
		return err
	}
	if errors.Is(ferr, syscall.EOPNOTSUPP) || errors.Is(ferr, syscall.ENOSYS) || errors.Is(ferr, syscall.ENODEV) {
		return errPunchUnsupported
	}
	return ferr
}
