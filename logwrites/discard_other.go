//go:build !linux

package logwrites

import "os"

func punchHoleSys(f *os.File, off, n int64) error { return errPunchUnsupported }
