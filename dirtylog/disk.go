package dirtylog

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"os"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/dmlog/dmlog/internal/lebitmap"
)

// Device is a log device: random-access reads and writes plus Sync, which
// must make every completed write durable (a cache flush). A Disk calls it
// from one goroutine at a time (its flushes are serialised), so an
// implementation need not be safe for concurrent use unless it is shared.
type Device interface {
	io.ReaderAt
	io.WriterAt
	Sync() error
}

// Disk is the kernel's "disk" log: the clean bitmap persisted on a device
// in the kernel's v2 format, so a mirror that crashes knows which regions
// may differ between its legs.
//
// Flush follows the kernel's rules: with nothing changed it does no I/O; a
// mark is written and the device synced before Flush returns; a flush that
// only clears first calls Options.FlushCallback (so the legs' data is
// durable before its region is clean), writes, and does not sync. Unlike
// the kernel, which rewrites the whole bitmap, it writes only the logical
// blocks that differ from what is on the device; the device bytes are the
// same the kernel would hold.
//
// Disk is safe for concurrent use. MarkRegion and ClearRegion are
// lock-free; Flush calls are serialised.
type Disk struct {
	regions
	dev  Device
	opts Options
	bs   int

	flushMu     sync.Mutex // serialises Flush, Resume and Close
	buf         []byte     // the kernel's I/O buffer: what the device holds
	scratch     []byte     // one block being encoded
	needSync    bool       // a mark was written but the device not synced
	fullRewrite bool       // the device may not hold buf: write it all

	devFailed   atomic.Bool // D
	syncFailed  atomic.Bool // F
	failOnce    sync.Once
	cbOnce      sync.Once
	closed      atomic.Bool
	closeDevice bool
	release     func() // drops the claim of an *os.File device; nil if none
}

// OpenDisk opens the disk log on dev and resumes it as the kernel does at
// activation: the mode in o decides whether the bitmap on the device is
// trusted (DefaultSync), replaced by all-dirty (ForceSync) or all-clean
// (NoSync); a version-1 log is read as version 2. The state is then
// written back as version 2 and synced. The caller keeps ownership of dev.
//
// Unlike the kernel, OpenDisk only writes over bytes it can prove are a
// log's (see "Safety" in the package doc). It refuses, writing nothing:
//   - a device whose first DiskLogSize bytes are neither a dm disk log nor
//     all zeroes (ErrNotLog), a log of another version (ErrBadVersion) or
//     a device it cannot read (ErrLogFailed), unless o.Format is set; the
//     kernel starts a new log over each of them (with Format, so does
//     OpenDisk: a bad version or a failed read then also fails the log,
//     status D);
//   - a log whose header counts another number of regions than o gives
//     (ErrGeometry), unless o.Resize is set;
//   - a device smaller than DiskLogSize bytes (ErrLogDeviceTooSmall),
//     when it reports its size through Size() int64 or Stat (or, for a
//     block device *os.File, a seek to its end). A short regular file (an
//     *os.File, or any device whose Stat says regular) is grown to
//     DiskLogSize instead, once its bytes are proven zero or a log's;
//   - an *os.File that another Disk or process holds (ErrInUse): OpenDisk
//     takes an exclusive flock on it, released by Close.
//
// It also fails if the geometry in o is invalid (ErrBadRegionSize,
// ErrBadOptions) or if the initial write or sync fails (ErrLogFailed).
func OpenDisk(dev Device, o Options) (*Disk, error) {
	n, err := o.regionCount()
	if err != nil {
		return nil, err
	}
	bs, err := o.blockSize()
	if err != nil {
		return nil, err
	}
	need := diskBufSize(n, bs)
	d := &Disk{dev: dev, opts: o, bs: bs, buf: make([]byte, need), scratch: make([]byte, bs)}
	if size, ok := deviceSize(dev); ok && size < need {
		// A short regular file grows when resume writes the log, once its
		// bytes are proven zero or a log's.
		if !growable(dev) {
			return nil, fmt.Errorf("%w: %s holds %d bytes; a log of %d regions with %d-byte blocks needs %d bytes (DiskLogSize)",
				ErrLogDeviceTooSmall, o.name(), size, n, bs, need)
		}
	}
	if f, ok := dev.(*os.File); ok {
		if d.release, err = claimFile(f, o.name()); err != nil {
			return nil, err
		}
	}
	d.init(o.RegionSize, n, o.Sync == NoSync)
	// Hints are kept per group of bs/8 clean words (one block's worth of
	// bitmap); flush maps a group to the one or two blocks it spans.
	for s := uint(0); 1<<s < bs/8; s++ {
		d.changedShift = s + 1
	}
	groups := (uint64(len(d.clean)) + 1<<d.changedShift - 1) >> d.changedShift
	d.changed = make([]atomic.Uint64, (groups+63)/64)
	if err := d.resume(true); err != nil {
		d.releaseClaim()
		return nil, err
	}
	return d, nil
}

// DiskLogSize returns the size in bytes of the disk log for a device of
// deviceSize bytes cut into regions of regionSize bytes, on a log device
// whose logical block size is blockSize bytes (0 for 512): the header
// area (1024 bytes) and the clean bitmap (one bit per region, in 64-bit
// words), rounded up to a whole block, as the kernel computes it. A log
// device needs at least this many bytes; OpenDisk grows a shorter regular
// file to it. The arguments are checked as OpenDisk checks Options.
func DiskLogSize(deviceSize, regionSize, blockSize int64) (int64, error) {
	if blockSize < 0 || blockSize > 1<<16 {
		return 0, fmt.Errorf("%w: block size is %d bytes: want a power of two from %d to %d bytes (0 for %d)",
			ErrBadOptions, blockSize, SectorSize, 1<<16, SectorSize)
	}
	o := Options{DeviceSize: deviceSize, RegionSize: regionSize, LogicalBlockSize: int(blockSize)}
	n, err := o.regionCount()
	if err != nil {
		return 0, err
	}
	bs, err := o.blockSize()
	if err != nil {
		return 0, err
	}
	return diskBufSize(n, bs), nil
}

// growable reports whether dev is a regular file, which a write past its
// end extends.
func growable(dev any) bool {
	st, ok := dev.(interface{ Stat() (os.FileInfo, error) })
	if !ok {
		return false
	}
	fi, err := st.Stat()
	return err == nil && fi.Mode().IsRegular()
}

func (d *Disk) releaseClaim() {
	if d.release != nil {
		d.release()
		d.release = nil
	}
}

// deviceSize learns the size of dev if it can tell.
func deviceSize(dev any) (int64, bool) {
	switch v := dev.(type) {
	case interface{ Size() int64 }:
		if s := v.Size(); s >= 0 {
			return s, true
		}
	case interface{ Stat() (os.FileInfo, error) }:
		fi, err := v.Stat()
		if err != nil {
			break
		}
		if fi.Mode().IsRegular() {
			return fi.Size(), true
		}
		// A block device: its size is where a seek to the end lands. The
		// file offset is put back (the log uses ReadAt and WriteAt only).
		if s, ok := v.(io.Seeker); ok && fi.Mode()&os.ModeDevice != 0 {
			cur, err := s.Seek(0, io.SeekCurrent)
			if err != nil {
				break
			}
			end, err := s.Seek(0, io.SeekEnd)
			_, _ = s.Seek(cur, io.SeekStart)
			if err == nil {
				return end, true
			}
		}
	}
	return 0, false
}

func (d *Disk) fail(err error, flushErr bool) {
	d.devFailed.Store(true)
	if flushErr {
		d.syncFailed.Store(true)
	}
	d.failOnce.Do(func() {
		if d.opts.OnEvent != nil {
			d.opts.OnEvent(Event{Kind: EventLogFailed, Err: err})
		}
	})
}

// resume is the kernel's disk_resume, after the checks that keep it from
// overwriting what is not a log (see OpenDisk). opening is true for
// OpenDisk: a device that cannot be read is then refused (unless Format),
// as nothing proves it holds a log; a later Resume keeps the kernel's rule
// (fail the log, start anew), the device having been proven a log.
func (d *Disk) resume(opening bool) error {
	d.flushMu.Lock()
	defer d.flushMu.Unlock()
	var readErr error
	if _, err := d.dev.ReadAt(d.buf, 0); err != nil && !errors.Is(err, io.EOF) {
		readErr = fmt.Errorf("%w: reading %s: %w", ErrLogFailed, d.opts.name(), err)
		if opening && !d.opts.Format {
			return fmt.Errorf("%w; nothing proves it holds a log (set Options.Format to write a new one)", readErr)
		}
		clear(d.buf)
	}
	h := decodeHeader(d.buf)
	if readErr == nil {
		if err := d.checkOurs(h); err != nil {
			return err
		}
	}
	if d.opts.Sync != DefaultSync || h.Magic != DiskMagic {
		h = DiskHeader{Magic: DiskMagic, Version: DiskVersion}
	}
	if h.Version == 1 {
		h.Version = DiskVersion
	}
	if h.Version != DiskVersion {
		d.fail(fmt.Errorf("%w: %s has version %d", ErrBadVersion, d.opts.name(), h.Version), false)
		h = DiskHeader{Magic: DiskMagic, Version: DiskVersion}
	}
	if readErr != nil {
		d.fail(readErr, false)
		h = DiskHeader{Magic: DiskMagic, Version: DiskVersion}
	}

	// Load the clean bits: on-disk bits for [0, nr), then the grown tail.
	words := make([]uint64, len(d.clean))
	lebitmap.DecodeWords(words, d.buf[diskBitmapOffset:diskBitmapOffset+len(words)*8])
	nr := min(h.NrRegions, d.count)
	for r := nr; r < d.count; r++ {
		if d.opts.Sync == NoSync {
			words[r/64] |= 1 << (r % 64)
		} else {
			words[r/64] &^= 1 << (r % 64)
		}
	}
	if len(words) > 0 {
		words[len(words)-1] &= d.tailMask()
	}
	for i, w := range words {
		d.clean[i].Store(w)
	}
	for i := range d.changed {
		d.changed[i].Store(0)
	}
	d.syncFromClean()

	h.NrRegions = d.count
	h.encode(d.buf)
	lebitmap.EncodeWords(d.buf[diskBitmapOffset:], words)
	if _, err := d.dev.WriteAt(d.buf, 0); err != nil {
		d.fullRewrite = true
		err = fmt.Errorf("%w: writing %s: %w", ErrLogFailed, d.opts.name(), err)
		d.fail(err, false)
		return err
	}
	if err := d.dev.Sync(); err != nil {
		d.fullRewrite = true
		err = fmt.Errorf("%w: syncing %s: %w", ErrLogFailed, d.opts.name(), err)
		d.fail(err, true)
		return err
	}
	d.fullRewrite = false
	d.needSync = false
	return nil
}

// checkOurs refuses what resume must not overwrite (see OpenDisk): bytes
// that are neither a dm disk log nor zeroes, a log of a version it cannot
// read (unless Format), a log of another region count (unless Resize).
func (d *Disk) checkOurs(h DiskHeader) error {
	name := d.opts.name()
	if h.Magic != DiskMagic {
		i := slices.IndexFunc(d.buf, func(b byte) bool { return b != 0 })
		switch {
		case i < 0 || d.opts.Format:
			return nil // a fresh device, or the caller asked
		case i < diskHeaderSize:
			return fmt.Errorf("%w: %s: found % x at byte 0, neither a dm disk log header (magic \"MiRr\", 72 52 69 4d) nor zeroes; set Options.Format to overwrite it",
				ErrNotLog, name, d.buf[:diskHeaderSize])
		default:
			return fmt.Errorf("%w: %s: no dm disk log header at byte 0, yet byte %d of the %d bytes the log would write holds %#02x; set Options.Format to overwrite it",
				ErrNotLog, name, i, len(d.buf), d.buf[i])
		}
	}
	if h.Version != 1 && h.Version != DiskVersion {
		if d.opts.Format {
			return nil // the kernel's rule: fail the log, start anew
		}
		return fmt.Errorf("%w: %s holds a dm disk log of version %d (this package reads versions 1 and 2); set Options.Format to start a new log over it",
			ErrBadVersion, name, h.Version)
	}
	if h.NrRegions != d.count && !d.opts.Resize {
		return fmt.Errorf("%w: %s holds a log of %d regions, the options give %d regions of %d bytes (Options.DeviceSize %d bytes); reopen with the region size the log was made with, or set Options.Resize to grow or shrink it",
			ErrGeometry, name, h.NrRegions, d.count, d.opts.RegionSize, d.opts.DeviceSize)
	}
	return nil
}

// Flush writes the blocks of the bitmap that changed since the last
// successful flush. See the type's doc for the rules. A failed write or
// sync fails the log (status D or F, one event) and returns an error
// wrapping ErrLogFailed; the next Flush retries. ctx is not consulted:
// device I/O, once issued, cannot be abandoned, and a caller that gave up
// would not know which marks are durable.
func (d *Disk) Flush(ctx context.Context) error {
	if d.closed.Load() {
		return ErrClosed
	}
	d.flushMu.Lock()
	defer d.flushMu.Unlock()
	return d.flushLocked()
}

// blockRun is a run of consecutive changed blocks starting at block lo,
// with their new contents.
type blockRun struct {
	lo   uint64
	data []byte
}

func (d *Disk) flushLocked() error {
	blocks := uint64(len(d.buf) / d.bs)
	// Take the hints first, then read the bits: a mark racing with us
	// either is read below or leaves its hint for the next flush.
	ghints := make([]uint64, len(d.changed))
	any := d.fullRewrite
	for i := range d.changed {
		ghints[i] = d.changed[i].Swap(0)
		any = any || ghints[i] != 0
	}
	if !any && !d.needSync {
		return nil
	}
	restore := func() {
		for i, h := range ghints {
			if h != 0 {
				d.changed[i].Or(h)
			}
		}
	}
	hints := make([]uint64, (blocks+63)/64)
	bs := uint64(d.bs)
	for i, h := range ghints {
		for ; h != 0; h &= h - 1 {
			g := uint64(i)*64 + uint64(bits.TrailingZeros64(h))
			lo := (diskBitmapOffset + g*bs) / bs
			hi := min((diskBitmapOffset+(g+1)*bs-1)/bs, blocks-1)
			for b := lo; b <= hi; b++ {
				hints[b/64] |= 1 << (b % 64)
			}
		}
	}
	dirtied, cleaned := d.needSync, false
	var runs []blockRun
	scan := func() {
		runs = runs[:0]
		for b := uint64(0); b < blocks; b++ {
			if !d.fullRewrite && hints[b/64]&(1<<(b%64)) == 0 {
				continue
			}
			img := d.encodeBlock(b)
			old := d.buf[b*bs : (b+1)*bs]
			same := true
			for i := range img {
				if img[i] == old[i] {
					continue
				}
				same = false
				if img[i]&^old[i] != 0 {
					cleaned = true
				}
				if old[i]&^img[i] != 0 {
					dirtied = true
				}
			}
			if same && !d.fullRewrite {
				continue
			}
			if n := len(runs); n > 0 && runs[n-1].lo+uint64(len(runs[n-1].data))/bs == b {
				runs[n-1].data = append(runs[n-1].data, img...)
			} else {
				runs = append(runs, blockRun{lo: b, data: append([]byte(nil), img...)})
			}
		}
	}
	scan()
	if cleaned && d.opts.FlushCallback != nil {
		if err := d.opts.FlushCallback(); err != nil {
			d.flushFailed.Store(true)
			d.cbOnce.Do(func() {
				if d.opts.OnEvent != nil {
					d.opts.OnEvent(Event{Kind: EventFlushCallbackFailed, Err: err})
				}
			})
			d.dirtyAll()
			for i := range ghints {
				ghints[i] |= d.changed[i].Swap(0)
			}
			for b := uint64(0); b < blocks; b++ {
				hints[b/64] |= 1 << (b % 64)
			}
			scan()
		}
	}
	// Write each run with one WriteAt.
	for _, run := range runs {
		off := int64(run.lo) * int64(d.bs)
		if _, err := d.dev.WriteAt(run.data, off); err != nil {
			restore()
			err = fmt.Errorf("%w: writing %s at %d: %w", ErrLogFailed, d.opts.name(), off, err)
			d.fail(err, false)
			return err
		}
		copy(d.buf[off:], run.data)
	}
	d.fullRewrite = false
	if dirtied {
		d.needSync = true
		if err := d.dev.Sync(); err != nil {
			err = fmt.Errorf("%w: syncing %s: %w", ErrLogFailed, d.opts.name(), err)
			d.fail(err, true)
			return err
		}
		d.needSync = false
	}
	return nil
}

// encodeBlock returns block b of the buffer as the current clean bits
// would make it, in d.scratch (valid until the next call).
func (d *Disk) encodeBlock(b uint64) []byte {
	bs := uint64(d.bs)
	out := d.scratch
	copy(out, d.buf[b*bs:(b+1)*bs])
	lo, hi := b*bs, (b+1)*bs // byte range of the block in the buffer
	bmEnd := uint64(diskBitmapOffset) + uint64(len(d.clean))*8
	if hi <= diskBitmapOffset || lo >= bmEnd {
		return out
	}
	start := max(lo, diskBitmapOffset)
	end := min(hi, bmEnd)
	for p := start; p < end; p += 8 {
		w := d.clean[(p-diskBitmapOffset)/8].Load()
		binary.LittleEndian.PutUint64(out[p-lo:], w)
	}
	return out
}

// Suspend flushes the log (the kernel's postsuspend).
func (d *Disk) Suspend(ctx context.Context) error { return d.Flush(ctx) }

// Resume re-reads the log from the device, rebuilds the sync state from
// it, rewrites it and restarts the resync cursor (the kernel's
// disk_resume). Unflushed marks are lost: suspend first. A device that no
// longer holds this log (overwritten since OpenDisk) is refused as
// OpenDisk refuses it (ErrNotLog, ErrBadVersion, ErrGeometry, unless
// Options.Format or Resize) and is not written; a failed read keeps the
// kernel's rule (the log fails, status D, and starts anew), the device
// having been proven a log when it was opened.
func (d *Disk) Resume(context.Context) error {
	if d.closed.Load() {
		return ErrClosed
	}
	return d.resume(false)
}

// Status returns "3 disk <dev> <A|D|F>": A alive, D the device failed, F a
// sync of the device failed.
func (d *Disk) Status() string {
	return fmt.Sprintf("3 disk %s %c", d.opts.name(), d.failChar())
}

func (d *Disk) failChar() byte {
	switch {
	case d.syncFailed.Load():
		return 'F'
	case d.devFailed.Load():
		return 'D'
	}
	return 'A'
}

// Table returns "disk <2|3> <dev> <sectors> [sync |nosync ]".
func (d *Disk) Table() string {
	argc := 2
	if d.opts.Sync != DefaultSync {
		argc = 3
	}
	s := fmt.Sprintf("disk %d %s %d ", argc, d.opts.name(), d.opts.RegionSize/SectorSize)
	if d.opts.Sync != DefaultSync {
		s += d.opts.Sync.String() + " "
	}
	return s
}

// Failed reports whether the log device has failed (status D or F).
func (d *Disk) Failed() bool { return d.devFailed.Load() }

// Close flushes the log, syncs the device (so the last clears are
// durable too), releases the claim on an *os.File device (its flock) and,
// if the log opened its device (New with an opener returning an
// io.Closer), closes the device. Later calls return
// ErrClosed (which wraps os.ErrClosed).
func (d *Disk) Close() error {
	if d.closed.Swap(true) {
		return ErrClosed
	}
	d.flushMu.Lock()
	defer d.flushMu.Unlock()
	err := d.flushLocked()
	if err == nil {
		// Unlike the kernel's postsuspend, sync the final clears too, so
		// a clean shutdown leaves a clean log and the next activation
		// resyncs nothing.
		if serr := d.dev.Sync(); serr != nil {
			serr = fmt.Errorf("%w: syncing %s: %w", ErrLogFailed, d.opts.name(), serr)
			d.fail(serr, true)
			err = serr
		}
	}
	d.releaseClaim()
	if d.closeDevice {
		if c, ok := d.dev.(io.Closer); ok {
			err = errors.Join(err, c.Close())
		}
	}
	return err
}

var _ Log = (*Disk)(nil)
