package nbd

import (
	"errors"
	"fmt"
	"io"
)

// Backend is what an export serves: a byte-addressed device. The server
// calls its methods from many goroutines at once (requests of one
// connection run concurrently, and so do connections), so a Backend must be
// safe for concurrent use.
//
// Optional capabilities, found by type assertion:
//
//   - Sync() error: makes completed writes durable. It backs NBD_CMD_FLUSH
//     and, without a native FUA write, NBD_CMD_FLAG_FUA (the write, then
//     Sync, acknowledged only after both).
//   - WriteAtFUA(p []byte, off int64) (int, error): a write that is durable
//     when it returns (used for NBD_CMD_WRITE with NBD_CMD_FLAG_FUA).
//   - Discard(off, n int64) error: backs NBD_CMD_TRIM; without it the
//     export does not advertise trim.
type Backend interface {
	io.ReaderAt
	io.WriterAt
}

type syncer interface{ Sync() error }

type fuaWriter interface {
	WriteAtFUA(p []byte, off int64) (int, error)
}

type discarder interface {
	Discard(off, n int64) error
}

// Export is one device a Server offers under a name. It is a plain value;
// NewServer copies it.
type Export struct {
	// Name is what clients ask for; "" is also the default export (the
	// first export answers the empty name when no export is named "").
	Name string
	// Description is sent to clients that ask for it (NBD_INFO_DESCRIPTION).
	Description string
	// Size is the export's size in bytes (> 0).
	Size int64
	// Dev is the device behind the export.
	Dev Backend
	// ReadOnly refuses writes, trims and write-zeroes with NBD_EPERM.
	ReadOnly bool
	// MultiConn advertises NBD_FLAG_CAN_MULTI_CONN: set it only when a flush
	// on any connection makes the writes completed on every connection
	// durable (true of a file, a Mirror and a Recorder, whose Sync covers
	// every completed write).
	MultiConn bool
	// MinBlock is the minimum block size: a power of two up to 64 KiB, the
	// alignment every request's offset and length must have (NBD_EINVAL
	// otherwise); Size must be a multiple of it. Zero means 1.
	MinBlock uint32
	// PreferredBlock is the preferred block size: a power of two at least
	// max(MinBlock, 512). Zero means 4096 (or MinBlock if larger).
	PreferredBlock uint32
}

func (e *Export) check(maxPayload uint32) error {
	if e.Dev == nil {
		return fmt.Errorf("%w: export %q has no device", ErrBadExport, e.Name)
	}
	if e.Size <= 0 {
		return fmt.Errorf("%w: export %q has size %d bytes, must be > 0", ErrBadExport, e.Name, e.Size)
	}
	if len(e.Name) > maxNameLength || len(e.Description) > maxNameLength {
		return fmt.Errorf("%w: export %q: name or description over %d bytes", ErrBadExport, e.Name, maxNameLength)
	}
	if e.MinBlock == 0 {
		e.MinBlock = 1
	}
	if e.MinBlock&(e.MinBlock-1) != 0 || e.MinBlock > 64<<10 {
		return fmt.Errorf("%w: export %q: minimum block %d bytes is not a power of two up to 64 KiB", ErrBadExport, e.Name, e.MinBlock)
	}
	if e.Size%int64(e.MinBlock) != 0 {
		return fmt.Errorf("%w: export %q: size %d bytes is not a multiple of the %d-byte minimum block (its last %d bytes could not be reached)",
			ErrBadExport, e.Name, e.Size, e.MinBlock, e.Size%int64(e.MinBlock))
	}
	if e.PreferredBlock == 0 {
		e.PreferredBlock = max(4096, e.MinBlock)
	}
	if p := e.PreferredBlock; p&(p-1) != 0 || p < max(e.MinBlock, 512) || p > maxPayload {
		return fmt.Errorf("%w: export %q: preferred block %d bytes must be a power of two from max(minimum block, 512) to the maximum payload %d", ErrBadExport, e.Name, p, maxPayload)
	}
	return nil
}

// transmissionFlags are the flags advertised for e.
func (e *Export) transmissionFlags() uint16 {
	f := uint16(tflagHasFlags | tflagSendWriteZeroes)
	_, canSync := e.Dev.(syncer)
	_, canFUA := e.Dev.(fuaWriter)
	if canSync {
		f |= tflagSendFlush
	}
	if canSync || canFUA {
		f |= tflagSendFUA
	}
	if _, ok := e.Dev.(discarder); ok {
		f |= tflagSendTrim
	}
	if e.MultiConn {
		f |= tflagCanMultiConn
	}
	if e.ReadOnly {
		f |= tflagReadOnly
	}
	return f
}

// writeFUA writes p at off durably: natively if the device can, else the
// write followed by a sync.
func writeFUA(d Backend, p []byte, off int64) error {
	if w, ok := d.(fuaWriter); ok {
		n, err := w.WriteAtFUA(p, off)
		return wrote(n, len(p), err)
	}
	if n, err := d.WriteAt(p, off); wrote(n, len(p), err) != nil {
		return wrote(n, len(p), err)
	}
	return syncBackend(d)
}

// wrote turns a short write without an error into io.ErrShortWrite.
func wrote(n, want int, err error) error {
	if err == nil && n != want {
		err = io.ErrShortWrite
	}
	return err
}

func syncBackend(d Backend) error {
	if s, ok := d.(syncer); ok {
		return s.Sync()
	}
	return nil
}

var zeroBuf [1 << 20]byte

// writeZeroes writes n zero bytes at off, in chunks.
func writeZeroes(d Backend, off, n int64, fua bool) error {
	for n > 0 {
		c := min(n, int64(len(zeroBuf)))
		if n, err := d.WriteAt(zeroBuf[:c], off); wrote(n, int(c), err) != nil {
			return wrote(n, int(c), err)
		}
		off += c
		n -= c
	}
	if fua {
		return syncBackend(d)
	}
	return nil
}

// readFull reads len(p) bytes at off; an io.EOF after a full read is fine.
func readFull(d Backend, p []byte, off int64) error {
	n, err := d.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return err
}
