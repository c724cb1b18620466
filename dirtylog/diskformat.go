package dirtylog

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/bits-and-blooms/bitset"

	"github.com/dmlog/dmlog/internal/lebitmap"
)

// The kernel's disk log format, version 2 (drivers/md/dm-log.c): a header
// at byte 0 and the clean bitmap at byte 1024, all little-endian.
const (
	DiskMagic        = 0x4D695272 // "MiRr" as a little-endian uint32
	DiskVersion      = 2
	diskHeaderSize   = 16
	diskBitmapOffset = 1024
)

// diskBufSize is the size of the kernel's log I/O: header area and bitmap
// rounded up to the logical block size.
func diskBufSize(regions uint64, bs int) int64 {
	n := uint64(diskBitmapOffset) + lebitmap.Bytes(regions)
	b := uint64(bs)
	return int64((n + b - 1) / b * b)
}

// DiskHeader is the decoded header of a disk log. It is a plain value,
// safe to copy and to share.
type DiskHeader struct {
	Magic     uint32 // "MiRr" (0x4D695272) for a dm disk log
	Version   uint32 // 2 for the format this package writes
	NrRegions uint64 // regions the bitmap covers
}

func decodeHeader(b []byte) DiskHeader {
	return DiskHeader{
		Magic:     binary.LittleEndian.Uint32(b[0:]),
		Version:   binary.LittleEndian.Uint32(b[4:]),
		NrRegions: binary.LittleEndian.Uint64(b[8:]),
	}
}

func (h DiskHeader) encode(b []byte) {
	binary.LittleEndian.PutUint32(b[0:], h.Magic)
	binary.LittleEndian.PutUint32(b[4:], h.Version)
	binary.LittleEndian.PutUint64(b[8:], h.NrRegions)
}

// DiskImage is a disk log read back from a device: its header and its
// clean bitmap (bit set = clean and in sync). Reading it from several
// goroutines is safe; changing Clean while others read it is not.
type DiskImage struct {
	Header DiskHeader     // the decoded header
	Clean  *bitset.BitSet // bit r set: region r is clean and in sync
}

// Dirty returns the regions whose clean bit is not set, in order.
func (d *DiskImage) Dirty() []Region {
	var out []Region
	for r := uint64(0); r < d.Header.NrRegions; r++ {
		if !d.Clean.Test(uint(r)) {
			out = append(out, Region(r))
		}
	}
	return out
}

// ReadDiskImage decodes the disk log stored in r, which holds size bytes.
// It checks the magic and the version (1, the old native-endian format,
// is read as 2 as a little-endian kernel does) and that the device is long
// enough for nr_regions, so a corrupt header never causes a large
// allocation. Errors wrap ErrBadMagic, ErrBadVersion, ErrTruncated or the
// read error.
func ReadDiskImage(r io.ReaderAt, size int64) (*DiskImage, error) {
	var hb [diskHeaderSize]byte
	if size < diskHeaderSize {
		return nil, fmt.Errorf("%w: %d bytes is shorter than the %d-byte header", ErrTruncated, size, diskHeaderSize)
	}
	if _, err := r.ReadAt(hb[:], 0); err != nil {
		return nil, fmt.Errorf("dirtylog: reading disk log header: %w", err)
	}
	h := decodeHeader(hb[:])
	if h.Magic != DiskMagic {
		return nil, fmt.Errorf("%w: got %#08x, want %#08x (\"MiRr\")", ErrBadMagic, h.Magic, DiskMagic)
	}
	if h.Version != 1 && h.Version != DiskVersion {
		return nil, fmt.Errorf("%w: version %d", ErrBadVersion, h.Version)
	}
	if size < diskBitmapOffset || uint64(size-diskBitmapOffset)*8 < h.NrRegions {
		return nil, fmt.Errorf("%w: %d regions need a bitmap of %d bytes at offset %d; the log has %d bytes",
			ErrTruncated, h.NrRegions, (h.NrRegions+7)/8, diskBitmapOffset, size)
	}
	nb := (h.NrRegions + 7) / 8
	bm := make([]byte, nb)
	if _, err := r.ReadAt(bm, diskBitmapOffset); err != nil && !(err == io.EOF && nb == 0) {
		return nil, fmt.Errorf("dirtylog: reading disk log bitmap: %w", err)
	}
	return &DiskImage{Header: h, Clean: lebitmap.Decode(bm, h.NrRegions)}, nil
}

// EncodeDiskImage returns the bytes the kernel writes for a log of
// nrRegions regions whose clean bits are clean (nil: all dirty), padded to
// blockSize; bytes 16-1023 are zero.
func EncodeDiskImage(nrRegions uint64, clean *bitset.BitSet, blockSize int) []byte {
	buf := make([]byte, diskBufSize(nrRegions, blockSize))
	DiskHeader{Magic: DiskMagic, Version: DiskVersion, NrRegions: nrRegions}.encode(buf)
	words := make([]uint64, wordsFor(nrRegions))
	if clean != nil {
		copy(words, clean.Words())
	}
	if r := nrRegions % 64; r != 0 && len(words) > 0 {
		words[len(words)-1] &= 1<<r - 1
	}
	lebitmap.EncodeWords(buf[diskBitmapOffset:], words)
	return buf
}
