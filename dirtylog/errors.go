package dirtylog

import (
	"errors"
	"os"
)

// Sentinel errors. Errors returned by this package and its log types wrap
// one of these, so callers test them with errors.Is.
var (
	// ErrWouldBlock: the answer needs to wait, and the caller asked not to
	// (see NonBlocking). Ask again with a context that may block.
	ErrWouldBlock = errors.New("dirtylog: operation would block")
	// ErrBadArgs: a log was constructed with a wrong number of arguments
	// or an unrecognised word.
	ErrBadArgs = errors.New("dirtylog: bad log arguments")
	// ErrBadRegionSize: the region size is not a power of two of at least
	// two sectors and at most the device size.
	ErrBadRegionSize = errors.New("dirtylog: invalid region size")
	// ErrOpenDevice: Env.Open could not open the log device named in the
	// arguments; the opener's own error is wrapped too.
	ErrOpenDevice = errors.New("dirtylog: cannot open log device")
	// ErrLogDeviceTooSmall: the log device cannot hold the header and bitmap.
	ErrLogDeviceTooSmall = errors.New("dirtylog: log device too small")
	// ErrBadMagic: the bytes are not a dm disk log (magic "MiRr").
	ErrBadMagic = errors.New("dirtylog: bad disk log magic")
	// ErrBadVersion: the disk log has a version this package cannot read.
	ErrBadVersion = errors.New("dirtylog: incompatible disk log version")
	// ErrTruncated: the disk log ends before its bitmap does.
	ErrTruncated = errors.New("dirtylog: disk log truncated")
	// ErrLogFailed: the log device failed a read, write or sync.
	ErrLogFailed = errors.New("dirtylog: log device failed")
	// ErrUnknownType: no log type is registered under the name.
	ErrUnknownType = errors.New("dirtylog: unknown log type")
	// ErrExists: a log type is already registered under the name.
	ErrExists = errors.New("dirtylog: log type already registered")
	// ErrRegionRange: a region at or beyond RegionCount.
	ErrRegionRange = errors.New("dirtylog: region out of range")
	// ErrClosed: the log has been closed. It wraps os.ErrClosed, so a
	// second Close of any Log in this module answers
	// errors.Is(err, os.ErrClosed) as a second Close of an *os.File does.
	ErrClosed error = closedError{}
)

// closedError is ErrClosed: its own message, and os.ErrClosed beneath.
type closedError struct{}

func (closedError) Error() string { return "dirtylog: log closed" }
func (closedError) Unwrap() error { return os.ErrClosed }
