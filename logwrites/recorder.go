package logwrites

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
)

// WriteFlags are the request flags of a write passed to WriteAtFlags. They
// have the values of the entry flags they turn into.
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
// Discard(off, n int64) error discards are passed down, otherwise they are
// only logged (the kernel target emulates discard the same way).
type Device interface {
	io.ReaderAt
	io.WriterAt
}

type syncer interface{ Sync() error }

type discarder interface {
	Discard(off, n int64) error
}

type sizer interface{ Size() int64 }

// Options configure a Recorder.
type Options struct {
	// SectorSize is the log's sector size in bytes: a power of two from 512
	// to MaxSectorSize (the kernel uses the data device's logical block
	// size, 512 or 4096). Zero means 512. Writes and discards must be
	// aligned to it.
	SectorSize int
	// LogSize is the size of the log device in bytes. Zero means the log
	// device's Size() if it has that method, else unlimited. As in the
	// kernel, an entry that would reach the end of the log stops logging.
	LogSize int64
	// Durable syncs the log device (if it has Sync) at every flush and
	// around every super-block update, so the log read after a crash of the
	// recording program is a clean prefix ending at the last flush, FUA or
	// mark. The kernel does not do this.
	Durable bool
}

// Recorder wraps a data device and records every write, discard, flush and
// mark into a log device in the dm-log-writes format, with the kernel
// target's ordering (see the package documentation).
//
// A Recorder is safe for concurrent use by many goroutines. Each method
// issues its I/O to the data device and "completes" when that I/O returns;
// the order of completion is the order of logging. The data logged is a copy
// taken when the write is submitted.
//
// Failures to log (log full, log write error) never fail data I/O: logging
// stops for good, Status ends in "logging_disabled", and Err returns the
// cause. A write, discard or flush that fails on the data device returns the
// error and is not logged (the kernel would log it anyway; the log here
// describes only what the device acknowledged).
type Recorder struct {
	dev     Device
	logDev  io.WriterAt
	s       int
	logSize int64 // -1: unlimited
	durable bool

	ops    sync.RWMutex // shared by operations, exclusive for Close
	closed bool         // guarded by ops

	enabled atomic.Bool // fast path check; the truth is disabled under mu

	mu        sync.Mutex // guards the fields below and serialises log writes
	unflushed []*pending // completed plain writes and discards, in completion order
	nextBlock uint64     // next free log block
	logged    uint64     // entries logged (the kernel's logged_entries)
	disabled  bool
	err       error
	super     []byte // a super block buffer of one sector
}

// pending is an entry waiting to be logged: its header block (and data).
type pending struct {
	flags Flags
	nr    uint64 // data sectors following the header (0 for discards)
	buf   []byte // header block, then data
}

var bufPool sync.Pool // of *[]byte

func getBuf(n int) []byte {
	if bp, ok := bufPool.Get().(*[]byte); ok && cap(*bp) >= n {
		b := (*bp)[:n]
		return b
	}
	return make([]byte, n)
}

func putBuf(b []byte) {
	if cap(b) > 4<<20 {
		return
	}
	bufPool.Put(&b)
}

// New returns a Recorder that passes I/O to dev and logs it to logDev. It
// writes an empty super block (nr_entries 0) to logDev right away, so the
// log can be opened at any time.
func New(dev Device, logDev io.WriterAt, o Options) (*Recorder, error) {
	s := o.SectorSize
	if s == 0 {
		s = 512
	}
	if s < 0 || !validSectorSize(uint64(s)) {
		return nil, fmt.Errorf("%w: %d", ErrBadSectorSize, o.SectorSize)
	}
	r := &Recorder{dev: dev, logDev: logDev, s: s, logSize: -1, durable: o.Durable, nextBlock: 1}
	switch {
	case o.LogSize > 0:
		r.logSize = o.LogSize
	case o.LogSize < 0:
		return nil, fmt.Errorf("logwrites: negative LogSize %d", o.LogSize)
	default:
		if sz, ok := logDev.(sizer); ok && sz.Size() >= 0 {
			r.logSize = sz.Size()
		}
	}
	if r.logSize >= 0 && r.logSize < int64(2*s) {
		return nil, fmt.Errorf("%w: log device of %d bytes cannot hold one entry", ErrLogFull, r.logSize)
	}
	r.super = make([]byte, s)
	putSuper(r.super, 0, s)
	if _, err := logDev.WriteAt(r.super, 0); err != nil {
		return nil, fmt.Errorf("logwrites: writing the super block: %w", err)
	}
	if r.durable {
		if err := syncDev(logDev); err != nil {
			return nil, fmt.Errorf("logwrites: syncing the log: %w", err)
		}
	}
	r.enabled.Store(true)
	return r, nil
}

// SectorSize returns the log's sector size.
func (r *Recorder) SectorSize() int { return r.s }

// ReadAt reads from the data device. Reads are not logged.
func (r *Recorder) ReadAt(p []byte, off int64) (int, error) { return r.dev.ReadAt(p, off) }

// WriteAt writes p at off on the data device and logs it as a plain write,
// held until the next flush. off and len(p) must be multiples of the sector
// size (ErrUnaligned otherwise, and nothing is written).
func (r *Recorder) WriteAt(p []byte, off int64) (int, error) { return r.WriteAtFlags(p, off, 0) }

// WriteAtFlags writes p at off with request flags (Preflush, FUA,
// Metadata). A Preflush write syncs the data device first and is logged as
// a FLUSH entry after the writes held until then; a FUA write syncs the
// data device after the write and is logged at once. An empty Preflush write
// is a flush (like Sync); other empty writes do nothing.
func (r *Recorder) WriteAtFlags(p []byte, off int64, f WriteFlags) (int, error) {
	if f&^(Preflush|FUA|Metadata) != 0 {
		return 0, fmt.Errorf("logwrites: unknown write flags %#x", uint8(f))
	}
	if err := r.aligned("write", off, int64(len(p))); err != nil {
		return 0, err
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
	var pend *pending
	if r.enabled.Load() {
		// Copy the data at submission, as the kernel does.
		nr := uint64(len(p) / r.s)
		buf := getBuf(r.s + len(p))
		clear(buf[:r.s])
		putHeader(buf, uint64(off)/uint64(r.s), nr, Flags(f), "")
		copy(buf[r.s:], p)
		pend = &pending{flags: Flags(f), nr: nr, buf: buf}
	}
	var spliced []*pending
	if f&Preflush != 0 {
		spliced = r.splice()
		if err := syncDev(r.dev); err != nil {
			r.unsplice(spliced)
			r.drop(pend)
			return 0, err
		}
	}
	n, err := r.dev.WriteAt(p, off)
	if err == nil && f&FUA != 0 {
		err = syncDev(r.dev)
	}
	if err != nil {
		r.unsplice(spliced)
		r.drop(pend)
		return n, err
	}
	r.complete(pend, spliced)
	return n, nil
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
	var pend *pending
	if r.enabled.Load() {
		buf := getBuf(r.s)
		clear(buf)
		putHeader(buf, 0, 0, flags, "")
		pend = &pending{flags: flags, buf: buf}
	}
	r.complete(pend, spliced)
	return nil
}

// Discard discards n bytes at off: passed to the data device if it has a
// Discard method, and logged as a DISCARD entry held until the next flush.
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
	var pend *pending
	if r.enabled.Load() {
		buf := getBuf(r.s)
		clear(buf)
		putHeader(buf, uint64(off)/uint64(r.s), uint64(n)/uint64(r.s), FlagDiscard, "")
		pend = &pending{flags: FlagDiscard, buf: buf}
	}
	if d, ok := r.dev.(discarder); ok {
		if err := d.Discard(off, n); err != nil {
			r.drop(pend)
			return err
		}
	}
	r.complete(pend, nil)
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
	return r.mark(name)
}

func (r *Recorder) mark(name string) error {
	buf := getBuf(r.s)
	clear(buf)
	putHeader(buf, 0, 0, FlagMark, name)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.disabled {
		putBuf(buf)
		return fmt.Errorf("mark %q: %w", name, r.err)
	}
	r.logLocked(&pending{flags: FlagMark, buf: buf})
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
	held := r.unflushed
	r.unflushed = nil
	for _, p := range held {
		r.logLocked(p)
	}
	r.mu.Unlock()
	_ = r.mark(EndMark) // an error here is also in r.err
	r.mu.Lock()
	defer r.mu.Unlock()
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
func (r *Recorder) splice() []*pending {
	r.mu.Lock()
	defer r.mu.Unlock()
	l := r.unflushed
	r.unflushed = nil
	return l
}

// unsplice puts back the writes of a flush that failed, ahead of later ones.
func (r *Recorder) unsplice(l []*pending) {
	if len(l) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.unflushed = append(l, r.unflushed...)
}

func (r *Recorder) drop(p *pending) {
	if p != nil {
		putBuf(p.buf)
	}
}

// complete handles the completion of an operation: p (nil if logging was
// off at submission) and, for a flush, the writes spliced at its issue.
func (r *Recorder) complete(p *pending, spliced []*pending) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.disabled {
		for _, q := range spliced {
			putBuf(q.buf)
		}
		r.drop(p)
		return
	}
	switch {
	case p != nil && p.flags&FlagFlush != 0:
		for _, q := range spliced {
			r.logLocked(q)
		}
		r.logLocked(p)
		if r.durable && !r.disabled {
			r.writeSuperLocked()
		}
	case p != nil && p.flags&FlagFUA != 0:
		r.logLocked(p)
	case p != nil:
		r.unflushed = append(r.unflushed, p)
	default:
		// Logging was disabled at submission: nothing to log. A flush
		// with no entry still owes its spliced writes nothing.
		for _, q := range spliced {
			putBuf(q.buf)
		}
	}
}

// logLocked appends one entry to the log, as the kernel's log thread does.
// r.mu is held.
func (r *Recorder) logLocked(p *pending) {
	defer putBuf(p.buf)
	if r.disabled {
		return
	}
	pos := r.nextBlock
	r.nextBlock += 1 + p.nr
	if r.logSize >= 0 && r.nextBlock*uint64(r.s) >= uint64(r.logSize) {
		r.disableLocked(ErrLogFull)
		return
	}
	r.logged++
	if _, err := r.logDev.WriteAt(p.buf, int64(pos)*int64(r.s)); err != nil {
		r.disableLocked(fmt.Errorf("writing entry %d at block %d: %w", r.logged-1, pos, err))
		return
	}
	if p.flags&(FlagFUA|FlagMark) != 0 {
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
	r.enabled.Store(false)
	r.err = fmt.Errorf("%w: %w", ErrLoggingDisabled, cause)
	for _, q := range r.unflushed {
		putBuf(q.buf)
	}
	r.unflushed = nil
}

func syncDev(w any) error {
	if s, ok := w.(syncer); ok {
		return s.Sync()
	}
	return nil
}
