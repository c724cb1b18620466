package logwrites

import "fmt"

// Early logging of held writes. A plain write or discard is held until the
// next flush and logged just before the flush entry, and FUA writes and
// marks logged in between go ahead of it, so its place in the log is not
// known when it completes. Keeping a copy of its data until the flush
// costs a copy of every byte. Instead, while nothing else is being logged
// (no flush issued and not yet logged), the held batch is written to the
// log device at once, at the place it will have if nothing overtakes it —
// just after the entries logged so far — and only its layout is kept. If
// something does go ahead (a FUA write, a mark, another flush's batch, a
// failed flush putting writes back), the batch is first read back from the
// log device into memory, and logging goes on as if it had been held there
// all along; the flush that logs it in place only counts it. The bytes the
// log device holds beyond the logged entries are not covered by the super
// block's count, so a log read at any time (or after a crash) is the same.
// This needs a log device that can be read (an io.ReaderAt) and room for
// the batch and its flush entry before the end of the log; otherwise writes
// are held in memory.

// earlyLocked writes a held write's entry (header block and data) to the
// log device after the held batch if the batch can be (or already is) on
// the log device, and reports whether it did.
func (r *Recorder) earlyLocked(sector, nr uint64, flags Flags, data []byte) bool {
	b := r.held
	if r.logRA == nil || r.noEarly || r.pending > 0 || (r.early != b && len(b.ents) > 0) {
		return false
	}
	blocks := 1 + uint64(len(data)/r.s)
	pos := r.nextBlock + uint64(b.size/r.s)
	if r.logSize >= 0 && (pos+blocks+1)*uint64(r.s) >= uint64(r.logSize) {
		return false // no room for it and a flush entry: keep it in memory
	}
	if err := r.writeEntryAt(pos, sector, nr, flags, data); err != nil {
		r.noEarly = true // a log device that fails: hold writes in memory
		return false
	}
	b.ents = append(b.ents, batchEntry{off: b.size, blocks: blocks})
	b.size += int(blocks) * r.s
	r.early = b
	return true
}

// writeEntryAt writes an entry's header block and data at log block pos.
func (r *Recorder) writeEntryAt(pos, sector, nr uint64, flags Flags, data []byte) error {
	off := int64(pos) * int64(r.s)
	hdr := r.scratch[:r.s]
	clear(hdr)
	putHeader(hdr, sector, nr, flags, "")
	if len(data) <= 16<<10 {
		buf := append(hdr, data...)
		_, err := r.logDev.WriteAt(buf, off)
		r.scratch = buf[:0]
		return err
	}
	if _, err := r.logDev.WriteAt(hdr, off); err != nil {
		return err
	}
	_, err := r.logDev.WriteAt(data, off+int64(r.s))
	return err
}

// holdLocked holds a completed plain write or discard until the next flush:
// on the log device already if it can be, else in the held batch's buffer.
func (r *Recorder) holdLocked(sector, nr uint64, flags Flags, data []byte) {
	if r.disabled || r.earlyLocked(sector, nr, flags, data) {
		return
	}
	r.inMemoryLocked()
	r.held.add(r.s, sector, nr, flags, data)
}

// inMemoryLocked reads the batch on the log device (if any) back into its
// buffer: something else is about to be logged where it lies.
func (r *Recorder) inMemoryLocked() {
	b := r.early
	if b == nil {
		return
	}
	r.early = nil
	b.buf = append(b.buf[:0], make([]byte, b.size)...)
	if err := readFull(r.logRA, b.buf, int64(r.nextBlock)*int64(r.s)); err != nil {
		r.disableLocked(fmt.Errorf("reading back %d held log blocks at block %d: %w", b.size/r.s, r.nextBlock, err))
	}
}

// appendFlushLocked adds the flush entry (flags) after the entries of b.
func (r *Recorder) appendFlushLocked(b *batch, flags Flags) {
	if b == r.early && !r.disabled {
		pos := r.nextBlock + uint64(b.size/r.s)
		if err := r.writeEntryAt(pos, 0, 0, flags, nil); err == nil {
			b.ents = append(b.ents, batchEntry{off: b.size, blocks: 1})
			b.size += r.s
			return
		}
		r.noEarly = true
		r.inMemoryLocked()
	}
	b.add(r.s, 0, 0, flags, nil)
}
