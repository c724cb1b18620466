package logwrites

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// discardZeroChunk is the largest buffer of zeros discardDevice writes at
// once where it cannot punch a hole.
const discardZeroChunk = 1 << 20

// punchHole deallocates [off, off+n) of f keeping its size, so that the
// range reads as zeros; it returns errPunchUnsupported where the system or
// the file system cannot. A variable so that tests can take the fallback.
var punchHole = punchHoleSys

// errPunchUnsupported: punching holes is not supported here.
var errPunchUnsupported = errors.New("punching holes is not supported")

// discardDevice applies a discard to a device that has no Discard method,
// so that the device reads as the replay of its log does (zeros): an
// *os.File has a hole punched (fallocate PUNCH_HOLE|KEEP_SIZE on Linux),
// or, where that is not supported, the range written with zeros, as for
// any other device.
func discardDevice(dev io.WriterAt, off, n int64) error {
	if f, ok := dev.(*os.File); ok {
		err := punchHole(f, off, n)
		if err == nil {
			return nil
		}
		if !errors.Is(err, errPunchUnsupported) {
			return fmt.Errorf("logwrites: discarding %d bytes at %d: %w", n, off, err)
		}
	}
	zeros := make([]byte, min(n, discardZeroChunk))
	for done := int64(0); done < n; {
		p := zeros[:min(int64(len(zeros)), n-done)]
		if _, err := dev.WriteAt(p, off+done); err != nil {
			return fmt.Errorf("logwrites: discarding %d bytes at %d (writing zeros): %w", n, off, err)
		}
		done += int64(len(p))
	}
	return nil
}
