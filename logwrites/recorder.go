package logwrites

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
)

// WriteFlags are the request flags of a write passed to WriteAtFlags. They
// have the values of the entry flags they turn into. A WriteFlags is a plain
// value, safe for concurrent use.
type WriteFlags uint8

// Write flags.
const (
	// Preflush asks for a cache flush before the write (REQ_PREFLUSH): the
	// device is synced first, writes held so far are logged, and the write is
	// logged as a FLUSH entry with its data.
	Preflush = WriteFlags(FlagFlush)
	// FUA makes the write durable when it completes (REQ_FUA); it is
	// logged at once, ahead of held writes, and the super block is rewritten.
	FUA = WriteFlags(FlagFUA)
	// Metadata tags the write as file-system metadata (REQ_META); it is only
	// recorded in the entry's flags.
	Metadata = WriteFlags(FlagMetadata)
)

// Device is the data device a Recorder wraps. If it also has
// Sync() error it is synced for flushes and FUA writes; if it has
// Discard(off, n int64) error discards are passed down. Otherwise a discard
// is applied so that the device reads as the replay of its log (zeros): on
// an *os.File by punching a hole (fallocate PUNCH_HOLE|KEEP_SIZE, Linux),
// else, or where holes are not supported, by writing zeros.
//
// A Recorder calls a Device's methods from as many goroutines as call the
// Recorder, so a Device must be safe for concurrent use (as io.ReaderAt and
// io.WriterAt implementations over distinct ranges normally are).
type Device interface {
	io.ReaderAt
	io.WriterAt
}

type syncer interface{ Sync() error }

type discarder interface {
	Discard(off, n int64) error
}

// Options configure a Recorder. It is a plain value, safe for concurrent
// use; New copies it and keeps no reference to it.
type Options struct {
	// SectorSize is the log's sector size in bytes: a power of two from 512
	// to MaxSectorSize (the kernel uses the data device's logical block
	// size, 512 or 4096). Zero means 512. Writes and discards must be
	// aligned to it.
	SectorSize int
	// LogSize is the size of the log device in bytes. Zero means the log
	// device's Size() if it has that method, the device's size if it is an
	// *os.File opened on a block device, else unlimited (a regular file
	// grows). As in the kernel, an entry that would reach the end of the
	// log stops logging.
	LogSize int64
	// Durable syncs the log device (if it has Sync) at every flush and
	// around every super-block update, so the log read after a crash of the
	// recording program is a clean prefix ending at the last flush, FUA or
	// mark. The kernel does not do this.
	Durable bool
	// ReadModifyWrite accepts writes not aligned to the sector size: the
	// partial sectors at either end are read from the data device, merged,
	// and the whole sectors written and logged. Such writes are serialised
	// with each other, but an aligned write racing one to the same sector
	// may be lost, as on a real device. Without it, unaligned writes fail
	// with ErrUnaligned. Discards must always be aligned.
	ReadModifyWrite bool
	// Overwrite lets New start a log over a log device that is not blank:
	// one whose first CheckedLogBytes bytes are not all zero (a previous
	// log, a file system, any data), or that cannot be read to tell.
	// Without it New refuses such a device with an error wrapping
	// ErrLogDeviceNotBlank and writes nothing. (The kernel target writes
	// its super block over whatever the device holds: Overwrite is its rule.)
	Overwrite bool
}

// CheckedLogBytes is how much of a log device New reads to see that it is
// blank (all zero) before it writes the super block: enough for the super
// blocks of a previous log and of common file systems (ext4 at 1 KiB, XFS
// at 0, btrfs at 64 KiB). A device shorter than that is read to its end.
const CheckedLogBytes = 128 << 10

// Recorder wraps a data device and records every write, discard, flush and
// mark into a log device in the dm-log-writes format, with the kernel
// target's ordering (see the package documentation).
//
// A Recorder is safe for concurrent use by many goroutines. Each method
// issues its I/O to the data device and "completes" when that I/O returns;
// the order of completion is the order of logging. The data logged is the
// data passed in (the caller may not change p during the call, as
// io.WriterAt requires; it is not retained). A plain write is held until
// the next flush: if the log device can be read (io.ReaderAt) and nothing
// is being logged ahead of it, its entry is written to the log device when
// it completes, at the place it will have, and read back only if a FUA
// write, a mark or another flush goes ahead of it; otherwise its data is
// copied and kept until the flush (see recorder_early.go).
//
// Failures to log (log full, log write error) never fail data I/O: logging
// stops for good, Status ends in "logging_disabled", and Err returns the
// cause. A write, discard or flush that fails on the data device returns the
// error and is not logged (the kernel would log it anyway; the log here
// describes only what the device acknowledged).
//
// A Recorder starts no goroutines; Close only logs what is held and writes
// the final super block.
type Recorder struct {
	dev     Device
	logDev  io.WriterAt
	s       int
	logSize int64 // -1: unlimited
	durable bool
	rmw     bool
	rmwMu   sync.Mutex // serialises read-modify-write cycles

	ops    sync.RWMutex // shared by operations, exclusive for Close
	closed bool         // guarded by ops

	mu        sync.Mutex // guards the fields below and serialises log writes
	held      *batch     // completed plain writes and discards, in completion order
	nextBlock uint64     // next free log block
	logged    uint64     // entries logged (the kernel's logged_entries)
	disabled  bool
	err       error
	super     []byte // a super block buffer of one sector
	scratch   []byte // header block (+ small data) buffer for direct entries

	// Early logging (recorder_early.go).
	logRA   io.ReaderAt // logDev as a reader; nil: writes are held in memory
	early   *batch      // the batch whose entries are on the log device at nextBlock, not in its buffer
	pending int         // batches spliced by flushes and not yet logged
	noEarly bool        // a log write failed: hold writes in memory from now on
}

// batch holds entries waiting for a flush: their header blocks and data
// back to back, exactly as they will appear in the log, so that a flush
// logs them with one write.
type batch struct {
	buf  []byte
	size int // bytes of its entries (len(buf) unless they are on the log device)
	ents []batchEntry
}

type batchEntry struct {
	off    int    // offset of the header block in buf
	blocks uint64 // header block plus data blocks
}

var batchPool = sync.Pool{New: func() any { return new(batch) }}

func newBatch() *batch { return batchPool.Get().(*batch) }

func (b *batch) free() {
	if b == nil {
		return
	}
	if cap(b.buf) > 64<<20 {
		b.buf = nil // do not keep huge buffers alive
	}
	b.buf, b.ents, b.size = b.buf[:0], b.ents[:0], 0
	batchPool.Put(b)
}

// add appends an entry: a header block (sector, nr, flags) and data.
func (b *batch) add(s int, sector, nr uint64, flags Flags, data []byte) {
	off := len(b.buf)
	b.buf = append(b.buf, make([]byte, s)...)
	putHeader(b.buf[off:], sector, nr, flags, "")
	b.buf = append(b.buf, data...)
	b.ents = append(b.ents, batchEntry{off: off, blocks: 1 + uint64(len(data)/s)})
	b.size = len(b.buf)
}

// New returns a Recorder that passes I/O to dev and logs it to logDev. It
// writes an empty super block (nr_entries 0) to logDev right away, so the
// log can be opened at any time. logDev must be blank (its first
// CheckedLogBytes bytes all zero: a new file, a zeroed device) unless
// Options.Overwrite is set; otherwise New refuses it with an error wrapping
// ErrLogDeviceNotBlank, having written nothing.
func New(dev Device, logDev io.WriterAt, o Options) (*Recorder, error) {
	s := o.SectorSize
	if s == 0 {
		s = 512
	}
	if s < 0 || !validSectorSize(uint64(s)) {
		return nil, fmt.Errorf("%w: Options.SectorSize %d bytes (want a power of two from 512 to %d bytes, or 0 for 512)", ErrBadSectorSize, o.SectorSize, MaxSectorSize)
	}
	r := &Recorder{dev: dev, logDev: logDev, s: s, logSize: -1, durable: o.Durable, rmw: o.ReadModifyWrite, nextBlock: 1, held: newBatch()}
	switch {
	case o.LogSize > 0:
		r.logSize = o.LogSize
	case o.LogSize < 0:
		return nil, fmt.Errorf("%w: Options.LogSize %d bytes is negative (0 means the log device's size)", ErrInvalidArgument, o.LogSize)
	default:
		sz, fixed, _, err := devSize(logDev)
		if err != nil {
			return nil, err
		}
		if fixed && sz >= 0 {
			r.logSize = sz
		}
	}
	if r.logSize >= 0 && r.logSize < int64(2*s) {
		return nil, fmt.Errorf("%w: a log device of %d bytes cannot hold the super block and one entry (%d bytes at sector size %d)", ErrLogFull, r.logSize, 2*s+1, s)
	}
	if !o.Overwrite {
		if err := checkBlank(logDev, r.logSize); err != nil {
			return nil, err
		}
	}
	r.super = make([]byte, s)
	r.scratch = make([]byte, s)
	r.logRA, _ = logDev.(io.ReaderAt)
	putSuper(r.super, 0, s)
	if _, err := logDev.WriteAt(r.super, 0); err != nil {
		return nil, fmt.Errorf("logwrites: writing the super block: %w", err)
	}
	if r.durable {
		if err := syncDev(logDev); err != nil {
			return nil, fmt.Errorf("logwrites: syncing the log: %w", err)
		}
	}
	return r, nil
}

// checkBlank returns nil if the first CheckedLogBytes bytes of logDev (or
// all of them, for a smaller device: size, or where reading stops) are
// zero, else an error wrapping ErrLogDeviceNotBlank that says what is there.
func checkBlank(logDev io.WriterAt, size int64) error {
	ra, ok := logDev.(io.ReaderAt)
	if !ok {
		return fmt.Errorf("%w: the log device (%T) has no ReadAt, so New cannot check that it holds no data; set Options.Overwrite to start a log over it anyway", ErrLogDeviceNotBlank, logDev)
	}
	n := int64(CheckedLogBytes)
	if size >= 0 {
		n = min(n, size)
	}
	buf := make([]byte, n)
	m, err := ra.ReadAt(buf, 0)
	if m < len(buf) && err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: reading its first %d bytes to check that it is blank: %w (set Options.Overwrite to start a log over it anyway)", ErrLogDeviceNotBlank, n, err)
	}
	buf = buf[:max(m, 0)]
	if allZero(buf) {
		return nil
	}
	what := "non-zero data"
	if len(buf) >= 8 && binary.LittleEndian.Uint64(buf) == Magic {
		what = "a dm-log-writes log"
	}
	i := 0
	for buf[i] == 0 {
		i++
	}
	return fmt.Errorf("%w: it holds %s (first non-zero byte at offset %d of the %d bytes checked); set Options.Overwrite to start a new log over it", ErrLogDeviceNotBlank, what, i, len(buf))
}

// SectorSize returns the log's sector size.
func (r *Recorder) SectorSize() int { return r.s }

// ReadAt reads from the data device. Reads are not logged.
func (r *Recorder) ReadAt(p []byte, off int64) (int, error) { return r.dev.ReadAt(p, off) }

// WriteAt writes p at off on the data device and logs it as a plain write,
// held until the next flush. off and len(p) must be multiples of the sector
// size (ErrUnaligned otherwise, and nothing is written) unless
// Options.ReadModifyWrite is set.
func (r *Recorder) WriteAt(p []byte, off int64) (int, error) { return r.WriteAtFlags(p, off, 0) }

// WriteAtFlags writes p at off with request flags (Preflush, FUA,
// Metadata). A Preflush write syncs the data device first and is logged as
// a FLUSH entry after the writes held until then; a FUA write syncs the
// data device after the write and is logged at once. An empty Preflush write
// is a flush (like Sync); other empty writes do nothing.
func (r *Recorder) WriteAtFlags(p []byte, off int64, f WriteFlags) (int, error) {
	if f&^(Preflush|FUA|Metadata) != 0 {
		return 0, fmt.Errorf("%w: unknown write flags %#x", ErrInvalidArgument, uint8(f))
	}
	if err := r.aligned("write", off, int64(len(p))); err != nil {
		if !r.rmw || off < 0 {
			return 0, err
		}
		return r.readModifyWrite(p, off, f)
	}
	if len(p) == 0 {
		if f&Preflush != 0 {
			return 0, r.flush(Flags(f))
		}
		return 0, nil
	}
	r.ops.RLock()
	defer r.ops.RUnlock()
	if r.closed {
		return 0, ErrClosed
	}
	var spliced *batch
	if f&Preflush != 0 {
		spliced = r.splice()
		if err := syncDev(r.dev); err != nil {
			r.unsplice(spliced)
			return 0, err
		}
	}
	n, err := r.dev.WriteAt(p, off)
	if err == nil && f&FUA != 0 {
		err = syncDev(r.dev)
	}
	if err != nil {
		r.unsplice(spliced)
		return n, err
	}
	sector, nr := uint64(off)/uint64(r.s), uint64(len(p)/r.s)
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case f&Preflush != 0:
		r.pending--
		r.logBatchLocked(spliced)
		r.logDirectLocked(sector, nr, Flags(f), "", p)
		r.flushedLocked()
	case f&FUA != 0:
		r.logDirectLocked(sector, nr, Flags(f), "", p)
	default:
		r.holdLocked(sector, nr, Flags(f), p)
	}
	return n, nil
}

// readModifyWrite widens an unaligned write to whole sectors.
func (r *Recorder) readModifyWrite(p []byte, off int64, f WriteFlags) (int, error) {
	if len(p) == 0 {
		return r.WriteAtFlags(nil, off&^int64(r.s-1), f)
	}
	s := int64(r.s)
	if off > math.MaxInt64-int64(len(p))-s {
		return 0, fmt.Errorf("%w: write of %d bytes at %d overflows", ErrInvalidArgument, len(p), off)
	}
	start := off / s * s
	end := (off + int64(len(p)) + s - 1) / s * s
	buf := make([]byte, end-start)
	r.rmwMu.Lock()
	defer r.rmwMu.Unlock()
	// Only the partial sectors at the ends need reading.
	if off != start {
		if err := readFull(r.dev, buf[:s], start); err != nil {
			return 0, fmt.Errorf("logwrites: read-modify-write of sector at %d: %w", start, err)
		}
	}
	if tail := end - s; (off+int64(len(p)))%s != 0 && (tail != start || off == start) {
		if err := readFull(r.dev, buf[tail-start:], tail); err != nil {
			return 0, fmt.Errorf("logwrites: read-modify-write of sector at %d: %w", tail, err)
		}
	}
	copy(buf[off-start:], p)
	if _, err := r.WriteAtFlags(buf, start, f); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Sync flushes the data device (REQ_PREFLUSH). The writes and discards that
// completed before Sync was called are logged, followed by a FLUSH entry,
// when the device's flush returns.
func (r *Recorder) Sync() error { return r.flush(FlagFlush) }

func (r *Recorder) flush(flags Flags) error {
	r.ops.RLock()
	defer r.ops.RUnlock()
	if r.closed {
		return ErrClosed
	}
	spliced := r.splice()
	err := syncDev(r.dev)
	if err == nil && flags&FlagFUA != 0 {
		err = syncDev(r.dev)
	}
	if err != nil {
		r.unsplice(spliced)
		return err
	}
	// The flush entry goes after the writes it flushes, in the same log
	// write (or right after them, if they are on the log device already).
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pending--
	r.appendFlushLocked(spliced, flags)
	r.logBatchLocked(spliced)
	if (flags&FlagFUA != 0 || r.durable) && !r.disabled {
		r.writeSuperLocked()
	}
	return nil
}

// Discard discards n bytes at off: passed to the data device if it has a
// Discard method, else applied as a hole or zeros (see Device), and logged
// as a DISCARD entry held until the next flush.
// off and n must be multiples of the sector size.
func (r *Recorder) Discard(off, n int64) error {
	if err := r.aligned("discard", off, n); err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	r.ops.RLock()
	defer r.ops.RUnlock()
	if r.closed {
		return ErrClosed
	}
	if d, ok := r.dev.(discarder); ok {
		if err := d.Discard(off, n); err != nil {
			return err
		}
	} else if err := discardDevice(r.dev, off, n); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.holdLocked(uint64(off)/uint64(r.s), uint64(n)/uint64(r.s), FlagDiscard, nil)
	return nil
}

// Mark logs a mark entry named name at once, ahead of writes still held
// for the next flush (like "dmsetup message <dev> 0 mark <name>"), and
// rewrites the super block. The name must be 1 to SectorSize()-33 bytes
// without NUL bytes (ErrInvalidMark); the kernel would truncate a longer one.
// If logging is disabled Mark returns an error wrapping ErrLoggingDisabled.
func (r *Recorder) Mark(name string) error {
	if name == "" || len(name) > maxMarkLen(r.s) {
		return fmt.Errorf("%w: %d bytes (1 to %d allowed)", ErrInvalidMark, len(name), maxMarkLen(r.s))
	}
	for i := 0; i < len(name); i++ {
		if name[i] == 0 {
			return fmt.Errorf("%w: NUL byte at %d", ErrInvalidMark, i)
		}
	}
	r.ops.RLock()
	defer r.ops.RUnlock()
	if r.closed {
		return ErrClosed
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.markLocked(name)
}

func (r *Recorder) markLocked(name string) error {
	r.logDirectLocked(0, 0, FlagMark, name, nil)
	if r.disabled {
		return fmt.Errorf("mark %q: %w", name, r.err)
	}
	return nil
}

// Status returns the kernel target's status line: "<logged entries>
// <highest allocated 512-byte sector of the log>", followed by
// " logging_disabled" once logging has stopped.
func (r *Recorder) Status() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := fmt.Sprintf("%d %d", r.logged, r.nextBlock*uint64(r.s)/512-1)
	if r.disabled {
		s += " logging_disabled"
	}
	return s
}

// Err returns nil while logging works, and afterwards an error wrapping
// ErrLoggingDisabled and its cause (ErrLogFull or the log device's error).
func (r *Recorder) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// Close waits for operations in flight, logs the writes still held, then the
// mark "dm-log-writes-end" (which rewrites the super block), and syncs the
// log device if it has Sync. It does not close either device. It returns
// Err() (logging failures), or the log sync error. Later calls return
// ErrClosed.
func (r *Recorder) Close() error {
	r.ops.Lock()
	defer r.ops.Unlock()
	if r.closed {
		return ErrClosed
	}
	r.closed = true
	r.mu.Lock()
	defer r.mu.Unlock()
	held := r.held
	r.held = nil
	r.logBatchLocked(held)
	_ = r.markLocked(EndMark) // an error here is also in r.err
	if r.err != nil {
		return r.err
	}
	if err := syncDev(r.logDev); err != nil {
		return fmt.Errorf("logwrites: syncing the log: %w", err)
	}
	return nil
}

func (r *Recorder) aligned(op string, off, n int64) error {
	s := int64(r.s)
	if off < 0 || n < 0 || off%s != 0 || n%s != 0 {
		return fmt.Errorf("%w: %s of %d bytes at %d (sector size %d)", ErrUnaligned, op, n, off, s)
	}
	return nil
}

// splice takes the writes completed so far, for a flush being issued.
func (r *Recorder) splice() *batch {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.held
	r.held = newBatch()
	r.pending++
	return b
}

// unsplice puts back the writes of a flush that failed, ahead of later ones.
func (r *Recorder) unsplice(b *batch) {
	if b == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pending--
	if b == r.early {
		r.inMemoryLocked() // later writes go after it, in memory
	}
	if r.disabled || len(b.ents) == 0 {
		b.free()
		return
	}
	later := r.held
	for _, e := range later.ents {
		b.ents = append(b.ents, batchEntry{off: e.off + len(b.buf), blocks: e.blocks})
	}
	b.buf = append(b.buf, later.buf...)
	b.size = len(b.buf)
	later.free()
	r.held = b
}

// flushedLocked finishes a flush: with Durable, the log is synced and the
// count rewritten so that the log survives a crash up to this flush.
func (r *Recorder) flushedLocked() {
	if r.durable && !r.disabled {
		r.writeSuperLocked()
	}
}

// reserveLocked allocates blocks for the next entry as the kernel's log
// thread does (the position advances, then the end is checked: the last
// block of the log is never used) and counts it. It returns false, having
// disabled logging, if the log is full.
func (r *Recorder) reserveLocked(blocks uint64) (pos uint64, ok bool) {
	pos = r.nextBlock
	r.nextBlock += blocks
	if r.logSize >= 0 && r.nextBlock*uint64(r.s) >= uint64(r.logSize) {
		r.disableLocked(ErrLogFull)
		return 0, false
	}
	r.logged++
	return pos, true
}

// logBatchLocked logs held entries, with one log write when they fit (none
// if they are on the log device already, where they belong).
func (r *Recorder) logBatchLocked(b *batch) {
	defer b.free()
	if b == nil || r.disabled || len(b.ents) == 0 {
		if b != nil && b == r.early {
			r.early = nil
		}
		return
	}
	total := uint64(b.size / r.s)
	if b == r.early && (r.logSize < 0 || (r.nextBlock+total)*uint64(r.s) < uint64(r.logSize)) {
		r.early = nil
		r.nextBlock += total
		r.logged += uint64(len(b.ents))
		return
	}
	// Another batch on the log device where b goes, or b there but the log
	// fills up within it: b (or the other) into memory first.
	r.inMemoryLocked()
	if r.disabled {
		return
	}
	if r.logSize >= 0 && (r.nextBlock+total)*uint64(r.s) >= uint64(r.logSize) {
		// The log fills up within the batch: go entry by entry, to stop
		// exactly where the kernel would.
		for _, e := range b.ents {
			pos, ok := r.reserveLocked(e.blocks)
			if !ok {
				return
			}
			end := e.off + int(e.blocks)*r.s
			if _, err := r.logDev.WriteAt(b.buf[e.off:end], int64(pos)*int64(r.s)); err != nil {
				r.disableLocked(fmt.Errorf("writing entry %d at block %d: %w", r.logged-1, pos, err))
				return
			}
		}
		return
	}
	pos := r.nextBlock
	first := r.logged
	r.nextBlock += total
	r.logged += uint64(len(b.ents))
	if _, err := r.logDev.WriteAt(b.buf, int64(pos)*int64(r.s)); err != nil {
		r.disableLocked(fmt.Errorf("writing entries %d-%d at block %d: %w", first, r.logged-1, pos, err))
	}
}

// logDirectLocked logs one entry at once: a FUA write, a flush, a mark. The
// super block is rewritten after a FUA or MARK entry.
func (r *Recorder) logDirectLocked(sector, nr uint64, flags Flags, mark string, data []byte) {
	if r.disabled {
		return
	}
	r.inMemoryLocked() // this entry goes ahead of held writes
	if r.disabled {
		return
	}
	pos, ok := r.reserveLocked(1 + uint64(len(data)/r.s))
	if !ok {
		return
	}
	off := int64(pos) * int64(r.s)
	hdr := r.scratch[:r.s]
	clear(hdr)
	putHeader(hdr, sector, nr, flags, mark)
	var err error
	if len(data) <= 16<<10 {
		// Small: one write of header and data.
		buf := append(hdr, data...)
		_, err = r.logDev.WriteAt(buf, off)
		r.scratch = buf[:0]
	} else {
		// Large: the header, then the data straight from the caller.
		if _, err = r.logDev.WriteAt(hdr, off); err == nil {
			_, err = r.logDev.WriteAt(data, off+int64(r.s))
		}
	}
	if err != nil {
		r.disableLocked(fmt.Errorf("writing entry %d at block %d: %w", r.logged-1, pos, err))
		return
	}
	if flags&(FlagFUA|FlagMark) != 0 {
		r.writeSuperLocked()
	}
}

// writeSuperLocked rewrites nr_entries. With Durable the entries are synced
// first and the super after, so the count never covers an unwritten entry
// even across a crash.
func (r *Recorder) writeSuperLocked() {
	if r.durable {
		if err := syncDev(r.logDev); err != nil {
			r.disableLocked(fmt.Errorf("syncing the log: %w", err))
			return
		}
	}
	putSuper(r.super, r.logged, r.s)
	if _, err := r.logDev.WriteAt(r.super, 0); err != nil {
		r.disableLocked(fmt.Errorf("writing the super block: %w", err))
		return
	}
	if r.durable {
		if err := syncDev(r.logDev); err != nil {
			r.disableLocked(fmt.Errorf("syncing the log: %w", err))
		}
	}
}

func (r *Recorder) disableLocked(cause error) {
	if r.disabled {
		return
	}
	r.disabled = true
	r.early = nil
	r.err = fmt.Errorf("%w: %w", ErrLoggingDisabled, cause)
	if r.held != nil {
		r.held.free()
		r.held = newBatch()
	}
}

func syncDev(w any) error {
	if s, ok := w.(syncer); ok {
		return s.Sync()
	}
	return nil
}
