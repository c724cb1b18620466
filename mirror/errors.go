package mirror

import (
	"errors"
	"io"
	"os"
)

// Sentinel errors. Every error returned by this package wraps one of these
// (or an error from a leg or the log), so callers test them with errors.Is.
var (
	// ErrClosed: the mirror has been closed. It wraps os.ErrClosed, as
	// every closed dmlog type's errors do (the os.File convention): a
	// second Close returns it.
	ErrClosed error = closedError{}
	// ErrIO: the I/O could not be served by any leg (the kernel's EIO):
	// every leg that could hold the data failed.
	ErrIO = errors.New("mirror: I/O error")
	// ErrLogFailed: the dirty log could not make a write's marks durable,
	// so the write was not issued to any leg.
	ErrLogFailed = errors.New("mirror: dirty log failed")
	// ErrRange: the I/O starts or ends outside the mirror.
	ErrRange = errors.New("mirror: I/O beyond end of device")
	// ErrBadTable: a table line or Options are invalid.
	ErrBadTable = errors.New("mirror: bad table")
	// ErrBadLeg: a leg index or leg device is invalid for the operation.
	ErrBadLeg = errors.New("mirror: bad leg")
)

// closedError is ErrClosed: its own message, and errors.Is(err,
// os.ErrClosed) holds.
type closedError struct{}

func (closedError) Error() string        { return "mirror: closed" }
func (closedError) Is(target error) bool { return target == os.ErrClosed }

// errEOF is io.EOF, returned by ReadAt for reads past the end.
var errEOF = io.EOF
