package logwrites

import (
	"encoding/binary"
	"strconv"
	"strings"
)

// On-disk constants of the dm-log-writes format (include/uapi-less, from
// drivers/md/dm-log-writes.c).
const (
	// Magic is the super block magic, "jsfwshr" read as a big number; on disk
	// (little-endian) the first 8 bytes read "rhswfsj\x00".
	Magic uint64 = 0x6a736677736872
	// Version is the only log format version.
	Version uint64 = 1
	// HeaderSize is the size of an entry header (and of the super block's
	// fields, padded) in bytes; the rest of the header block is zero, except
	// for a mark's name.
	HeaderSize = 32
	// MaxSectorSize is the largest sector size Open and New accept.
	MaxSectorSize = 1 << 20
	// EndMark is the mark the kernel (and Recorder.Close) logs last.
	EndMark = "dm-log-writes-end"
)

// Flags are the flag bits of a log entry, with the kernel's LOG_*_FLAG
// values. A Flags is a plain value, safe for concurrent use.
type Flags uint64

// Entry flag bits.
const (
	FlagFlush    Flags = 1 << 0 // the write carried REQ_PREFLUSH
	FlagFUA      Flags = 1 << 1 // the write carried REQ_FUA
	FlagDiscard  Flags = 1 << 2 // a discard; no data follows the header
	FlagMark     Flags = 1 << 3 // a userspace mark; the name is inline
	FlagMetadata Flags = 1 << 4 // the write carried REQ_META
)

// String formats the flags as replay-log prints them, e.g. "FLUSH|FUA",
// "NONE" for none, unknown bits as "UNKNOWN.0x40".
func (f Flags) String() string {
	var parts []string
	names := []struct {
		f Flags
		s string
	}{{FlagFlush, "FLUSH"}, {FlagFUA, "FUA"}, {FlagDiscard, "DISCARD"}, {FlagMark, "MARK"}, {FlagMetadata, "METADATA"}}
	rest := f
	for _, n := range names {
		if f&n.f != 0 {
			parts = append(parts, n.s)
			rest &^= n.f
		}
	}
	if rest != 0 {
		parts = append(parts, "UNKNOWN.0x"+strconv.FormatUint(uint64(rest), 16))
	}
	if len(parts) == 0 {
		return "NONE"
	}
	return strings.Join(parts, "|")
}

// Entry is one entry of a log, as read from its header. It is a plain
// value: safe to read from many goroutines.
type Entry struct {
	Index     uint64 // 0-based entry number
	Block     uint64 // block number of the entry header in the log (sector-size units)
	Flags     Flags  // the entry's flag bits (FLUSH, FUA, DISCARD, MARK, METADATA)
	Sector    uint64 // first sector, in the log's sector-size units, as on disk
	NrSectors uint64 // number of sectors, likewise
	Mark      string // the name, for MARK entries
}

// Offset returns the byte offset on the data device that the entry covers.
func (e Entry) Offset(sectorSize int) int64 { return int64(e.Sector) * int64(sectorSize) }

// Length returns the number of bytes the entry covers on the data device
// (for a write, also the length of its data in the log).
func (e Entry) Length(sectorSize int) int64 { return int64(e.NrSectors) * int64(sectorSize) }

// HasData reports whether the entry's data follows its header in the log:
// true for writes (including flushes and FUA writes carrying data), false
// for discards, marks and empty flushes.
func (e Entry) HasData() bool { return e.Flags&FlagDiscard == 0 && e.NrSectors > 0 }

// NextBlock returns the log block just after the entry and its data: the
// header block of the next entry (replay-log's "pos" in --find output).
func (e Entry) NextBlock() uint64 {
	if e.HasData() {
		return e.Block + 1 + e.NrSectors
	}
	return e.Block + 1
}

func (e Entry) isMark() bool { return e.Flags == FlagMark }

// putSuper encodes a super block into b (len(b) >= HeaderSize); it writes
// zeros into bytes 28-31, which the kernel leaves uninitialised.
func putSuper(b []byte, nrEntries uint64, sectorSize int) {
	binary.LittleEndian.PutUint64(b[0:], Magic)
	binary.LittleEndian.PutUint64(b[8:], Version)
	binary.LittleEndian.PutUint64(b[16:], nrEntries)
	binary.LittleEndian.PutUint32(b[24:], uint32(sectorSize))
	binary.LittleEndian.PutUint32(b[28:], 0)
}

// putHeader encodes an entry header (32 bytes) and, for a mark, its name at
// byte 32. b must be a zeroed header block.
func putHeader(b []byte, sector, nrSectors uint64, flags Flags, mark string) {
	binary.LittleEndian.PutUint64(b[0:], sector)
	binary.LittleEndian.PutUint64(b[8:], nrSectors)
	binary.LittleEndian.PutUint64(b[16:], uint64(flags))
	binary.LittleEndian.PutUint64(b[24:], uint64(len(mark)))
	copy(b[HeaderSize:], mark)
}

func validSectorSize(s uint64) bool {
	return s >= 512 && s <= MaxSectorSize && s&(s-1) == 0
}

// maxMarkLen is the longest mark name a Recorder logs for sector size s: the
// kernel keeps at least one zero byte after the name.
func maxMarkLen(s int) int { return s - HeaderSize - 1 }
