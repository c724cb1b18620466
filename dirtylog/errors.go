package dirtylog

import (
	"errors"
	"os"

	"github.com/dmlog/dmlog/internal/flock"
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
	// two sectors (1024 bytes) and at most the device size, or it cuts the
	// device into more regions than the kernel allows.
	ErrBadRegionSize = errors.New("dirtylog: invalid region size")
	// ErrBadOptions: an Options field other than RegionSize is missing or
	// invalid (DeviceSize, LogicalBlockSize); the message names the field,
	// its value and the unit.
	ErrBadOptions = errors.New("dirtylog: invalid options")
	// ErrOpenDevice: Env.Open could not open the log device named in the
	// arguments; the opener's own error is wrapped too.
	ErrOpenDevice = errors.New("dirtylog: cannot open log device")
	// ErrLogDeviceTooSmall: the log device cannot hold the header and
	// bitmap (DiskLogSize bytes), and is not a regular file OpenDisk may
	// grow.
	ErrLogDeviceTooSmall = errors.New("dirtylog: log device too small")
	// ErrNotLog: the log device holds bytes that are neither a dm disk
	// log nor zeroes (a file system, another program's data, a log of
	// another format); OpenDisk refuses to overwrite them unless
	// Options.Format is set.
	ErrNotLog = errors.New("dirtylog: log device holds data that is not a dm disk log")
	// ErrGeometry: the log on the device covers another number of regions
	// than the options give; OpenDisk refuses it unless Options.Resize is
	// set.
	ErrGeometry = errors.New("dirtylog: log geometry differs from the options")
	// ErrInUse: another opener (a Disk in this process, or another
	// process's flock) holds the log device. It is the value of the
	// module's internal flock package, so other dmlog packages that claim
	// their files (legs, images) can wrap the same sentinel.
	ErrInUse = flock.ErrInUse
	// ErrBadMagic: the bytes are not a dm disk log (magic "MiRr").
	ErrBadMagic = errors.New("dirtylog: bad disk log magic")
	// ErrBadVersion: the disk log has a version this package cannot read;
	// OpenDisk refuses it unless Options.Format is set.
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
