package logwrites

import (
	"errors"
	"fmt"
	"os"
)

// Sentinel errors. Every error returned by this package wraps one of these
// (test with errors.Is) together with context such as the entry index or log
// block concerned.
var (
	// ErrBadMagic: the log's super block does not start with the log-writes magic.
	ErrBadMagic = errors.New("logwrites: magic doesn't match")
	// ErrBadVersion: the super block's version is not 1.
	ErrBadVersion = errors.New("logwrites: version mismatch")
	// ErrBadSectorSize: the sector size in the super block (or in Options) is
	// not a power of two between 512 and MaxSectorSize.
	ErrBadSectorSize = errors.New("logwrites: invalid sector size")
	// ErrMalformed: an entry header is invalid (all zero, junk after the
	// 32-byte header, a MARK combined with another flag, sizes that overflow).
	ErrMalformed = errors.New("logwrites: malformed entry")
	// ErrTruncated: the log ends before the entries its super block counts
	// (or before an entry's data).
	ErrTruncated = errors.New("logwrites: log truncated")
	// ErrMarkNotFound: a start or end mark named in ReplayOptions is not in the log.
	ErrMarkNotFound = errors.New("logwrites: mark not found")
	// ErrNotFound: in Find mode no entry met a stop condition.
	ErrNotFound = errors.New("logwrites: couldn't find entry")
	// ErrInvalidEntry: a start entry at or beyond the number of entries, or
	// another invalid ReplayOptions value.
	ErrInvalidEntry = errors.New("logwrites: invalid entry number")
	// ErrNoTarget: Replay was given a nil target outside Find mode.
	ErrNoTarget = errors.New("logwrites: no replay target")
	// ErrCheck: the replay checker failed (returned an error or panicked).
	ErrCheck = errors.New("logwrites: checker failed")
	// ErrUnaligned: a write or discard is not aligned to the sector size.
	ErrUnaligned = errors.New("logwrites: I/O not aligned to the sector size")
	// ErrLoggingDisabled: logging has stopped for good (log full or a log
	// write error); data I/O goes on.
	ErrLoggingDisabled = errors.New("logwrites: logging disabled")
	// ErrLogFull: the log device ran out of space.
	ErrLogFull = errors.New("logwrites: ran out of space on the log device")
	// ErrClosed: the Recorder has been closed. It wraps os.ErrClosed (the
	// os.File convention), so errors.Is(err, os.ErrClosed) holds too.
	ErrClosed = fmt.Errorf("logwrites: recorder closed: %w", os.ErrClosed)
	// ErrLogDeviceNotBlank: New was given a log device that already holds
	// data (a previous log, a file system) or that it cannot read to check,
	// without Options.Overwrite.
	ErrLogDeviceNotBlank = errors.New("logwrites: log device is not blank")
	// ErrInvalidMark: a mark name is empty, too long for the sector size, or
	// contains a NUL byte.
	ErrInvalidMark = errors.New("logwrites: invalid mark name")
	// ErrInvalidArgument: an argument out of its domain, such as unknown
	// write flags, a negative Options.LogSize or a negative read offset.
	ErrInvalidArgument = errors.New("logwrites: invalid argument")
	// ErrDeviceSize: Explore does not know the device size (or it is
	// invalid), or a log entry lies beyond the end of the device.
	ErrDeviceSize = errors.New("logwrites: entry beyond the device or unknown device size")
)

// EntryError reports a problem with one log entry. It wraps one of the
// sentinel errors (or an I/O error) and names the entry by index and by the
// log block (in sector-size units) holding its header, as replay-log does.
// It is a plain value, safe to read from many goroutines.
type EntryError struct {
	Index uint64 // 0-based entry number
	Block uint64 // log block of the entry header
	Err   error  // the cause: wraps a sentinel (ErrMalformed, ErrTruncated) or is the read error
}

// Error formats the error as "entry <index> @<block>: <cause>".
func (e *EntryError) Error() string {
	return fmt.Sprintf("entry %d @%d: %v", e.Index, e.Block, e.Err)
}

// Unwrap returns the underlying error.
func (e *EntryError) Unwrap() error { return e.Err }
