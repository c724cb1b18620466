package logwrites

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"iter"
	"math"
)

// Log is an opened dm-log-writes log. It holds only the super block's
// fields; entries are read from the underlying io.ReaderAt on demand.
//
// A Log is safe for concurrent use by multiple goroutines if its
// io.ReaderAt is (as io.ReaderAt implementations are required to be for
// parallel ReadAt calls on the same source).
type Log struct {
	r          io.ReaderAt
	sectorSize int
	nrEntries  uint64
	size       int64 // the log's length in bytes when Open could learn it, else -1
}

// Open reads and validates the super block of the log in r: the magic, the
// version and the sector size (a power of two from 512 to MaxSectorSize).
// Bytes 28-31 of the super block are ignored, since the kernel leaves them
// uninitialised. Entries are validated as they are iterated.
func Open(r io.ReaderAt) (*Log, error) {
	var b [HeaderSize]byte
	if err := readFull(r, b[:], 0); err != nil {
		return nil, fmt.Errorf("logwrites: reading super block: %w", err)
	}
	if m := binary.LittleEndian.Uint64(b[0:]); m != Magic {
		return nil, fmt.Errorf("%w: got %#x, want %#x", ErrBadMagic, m, Magic)
	}
	if v := binary.LittleEndian.Uint64(b[8:]); v != Version {
		return nil, fmt.Errorf("%w: got %d, want %d", ErrBadVersion, v, Version)
	}
	s := uint64(binary.LittleEndian.Uint32(b[24:]))
	if !validSectorSize(s) {
		return nil, fmt.Errorf("%w: %d in the super block", ErrBadSectorSize, s)
	}
	l := &Log{r: r, sectorSize: int(s), nrEntries: binary.LittleEndian.Uint64(b[16:]), size: -1}
	// The log's length, learnt once after the super block was read, spares
	// a probe read per entry for its data: the entries counted were written
	// before the count. A log that grew since is probed beyond this length.
	if sz, _, known, err := devSize(r); err == nil && known && sz >= 0 {
		l.size = sz
	}
	return l, nil
}

// SectorSize returns the log's sector size in bytes (the unit of Entry's
// Sector, NrSectors and Block).
func (l *Log) SectorSize() int { return l.sectorSize }

// NumEntries returns nr_entries from the super block (replay-log's
// --num-entries). Entries stops there even if more entries follow in the log.
func (l *Log) NumEntries() uint64 { return l.nrEntries }

// Version returns the log format version (always 1 for an opened log).
func (l *Log) Version() uint64 { return Version }

// Entries iterates over the log's entries in order, validating each one as
// replay-log does, plus overflow checks and a check that a write entry's data
// is present. On the first invalid or unreadable entry it yields a zero Entry
// (with Index and Block set) and an *EntryError wrapping ErrMalformed,
// ErrTruncated or the read error, and stops.
//
// Entries reads headers only, never data: where entries are small, many
// headers come with one large read (see headerReader); where they are
// large, each header is one read of a sector. Whether a write's data is
// present is known from the log's length when Open could learn it (Size(),
// a file's length, a block device's size), else by reading its last byte.
func (l *Log) Entries() iter.Seq2[Entry, error] { return l.entries(newHeaderReader(l.r)) }

// entries iterates reading headers through r (the log itself, or a
// read-ahead window over it).
func (l *Log) entries(r io.ReaderAt) iter.Seq2[Entry, error] {
	return func(yield func(Entry, error) bool) {
		if l.nrEntries == 0 {
			return
		}
		s := uint64(l.sectorSize)
		// Check that the first header block exists before allocating a
		// buffer of its size.
		var one [1]byte
		if err := readFull(r, one[:], int64(2*s-1)); err != nil {
			yield(Entry{Block: 1}, &EntryError{Index: 0, Block: 1, Err: err})
			return
		}
		buf := make([]byte, min(l.sectorSize, 64<<10))
		block := uint64(1)
		for i := uint64(0); i < l.nrEntries; i++ {
			e, err := l.readEntry(r, buf, i, block)
			if err != nil {
				yield(Entry{Index: i, Block: block}, &EntryError{Index: i, Block: block, Err: err})
				return
			}
			next := e.NextBlock()
			if next > math.MaxInt64/s {
				err = fmt.Errorf("%w: entry extends beyond the largest log offset", ErrMalformed)
				yield(Entry{Index: i, Block: block}, &EntryError{Index: i, Block: block, Err: err})
				return
			}
			if !yield(e, nil) {
				return
			}
			block = next
		}
	}
}

// readEntry reads and validates the entry whose header is at block.
func (l *Log) readEntry(r io.ReaderAt, buf []byte, idx, block uint64) (Entry, error) {
	s := uint64(l.sectorSize)
	if block > math.MaxInt64/s-1 {
		return Entry{}, fmt.Errorf("%w: header beyond the largest log offset", ErrMalformed)
	}
	off := int64(block * s)
	if err := readFull(r, buf, off); err != nil {
		return Entry{}, err
	}
	e := Entry{
		Index:     idx,
		Block:     block,
		Sector:    binary.LittleEndian.Uint64(buf[0:]),
		NrSectors: binary.LittleEndian.Uint64(buf[8:]),
		Flags:     Flags(binary.LittleEndian.Uint64(buf[16:])),
	}
	dataLen := binary.LittleEndian.Uint64(buf[24:])
	if e.Flags == 0 && e.NrSectors == 0 {
		return Entry{}, fmt.Errorf("%w: all zero", ErrMalformed)
	}
	max := math.MaxInt64 / s
	if e.Sector > max || e.NrSectors > max || e.Sector+e.NrSectors > max {
		return Entry{}, fmt.Errorf("%w: sector %d + %d overflows", ErrMalformed, e.Sector, e.NrSectors)
	}
	if e.Flags&FlagMark != 0 {
		if e.Flags != FlagMark {
			return Entry{}, fmt.Errorf("%w: MARK combined with other flags (%v)", ErrMalformed, e.Flags)
		}
		if e.NrSectors != 0 {
			return Entry{}, fmt.Errorf("%w: MARK with %d sectors", ErrMalformed, e.NrSectors)
		}
		if dataLen > s-HeaderSize {
			return Entry{}, fmt.Errorf("%w: mark name of %d bytes does not fit the header block", ErrMalformed, dataLen)
		}
		if dataLen <= uint64(len(buf)-HeaderSize) {
			e.Mark = string(buf[HeaderSize : HeaderSize+dataLen])
			return e, nil
		}
		// A long name in a big sector: probe its end before allocating.
		var one [1]byte
		if err := readFull(r, one[:], off+int64(HeaderSize+dataLen)-1); err != nil {
			return Entry{}, err
		}
		name := make([]byte, dataLen)
		if err := readFull(r, name, off+HeaderSize); err != nil {
			return Entry{}, err
		}
		e.Mark = string(name)
		return e, nil
	}
	// Anything but a pure mark must be zero after the 32-byte header.
	if !allZero(buf[HeaderSize:]) {
		return Entry{}, fmt.Errorf("%w: not zero padded after the %d-byte header", ErrMalformed, HeaderSize)
	}
	for done := uint64(len(buf)); done < s; done += uint64(len(buf)) {
		if err := readFull(r, buf, off+int64(done)); err != nil {
			return Entry{}, err
		}
		if !allZero(buf) {
			return Entry{}, fmt.Errorf("%w: not zero padded after the %d-byte header", ErrMalformed, HeaderSize)
		}
	}
	if end := (block + 1 + e.NrSectors) * s; e.HasData() && (l.size < 0 || int64(end) > l.size) {
		// The data must be there: probe its last byte.
		var one [1]byte
		if err := readFull(r, one[:], int64(end-1)); err != nil {
			return Entry{}, fmt.Errorf("data of %d sectors: %w", e.NrSectors, err)
		}
	}
	return e, nil
}

// ReadData reads the data of write entry e from the log into p, which must
// be e.Length(SectorSize()) bytes long. For an entry without data (discard,
// mark, empty flush) it zero-fills p: a replayed discard zeroes its range.
func (l *Log) ReadData(e Entry, p []byte) error {
	s := l.sectorSize
	if int64(len(p)) != e.Length(s) {
		return fmt.Errorf("%w: ReadData buffer of %d bytes for entry %d of %d bytes", ErrInvalidEntry, len(p), e.Index, e.Length(s))
	}
	if !e.HasData() {
		clear(p)
		return nil
	}
	if err := readFull(l.r, p, int64(e.Block+1)*int64(s)); err != nil {
		return &EntryError{Index: e.Index, Block: e.Block, Err: fmt.Errorf("reading data: %w", err)}
	}
	return nil
}

// readFull reads len(p) bytes at off; a short read is ErrTruncated.
func readFull(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: %d of %d bytes at offset %d", ErrTruncated, n, len(p), off)
	}
	return err
}

func allZero(b []byte) bool {
	for len(b) >= 64 {
		le := binary.LittleEndian
		if le.Uint64(b)|le.Uint64(b[8:])|le.Uint64(b[16:])|le.Uint64(b[24:])|
			le.Uint64(b[32:])|le.Uint64(b[40:])|le.Uint64(b[48:])|le.Uint64(b[56:]) != 0 {
			return false
		}
		b = b[64:]
	}
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b) != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
