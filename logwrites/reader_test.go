package logwrites

import (
	"bytes"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
)

// Test idea 1: the super block, with garbage in bytes 28-31.
func TestOpenSuper(t *testing.T) {
	img := newHandLog(512).mark("a").bytes(-1)
	copy(img[28:32], []byte{0xff, 0xff, 0xff, 0xff})
	l := openBytes(t, img)
	require.Equal(t, 512, l.SectorSize())
	require.Equal(t, uint64(1), l.NumEntries())
	require.Equal(t, []entrySig{M("a")}, sigs(allEntries(t, l)))

	bad := func(mod func([]byte), want error) {
		t.Helper()
		b := newHandLog(512).mark("a").bytes(-1)
		mod(b)
		_, err := Open(bytes.NewReader(b))
		require.ErrorIs(t, err, want)
	}
	bad(func(b []byte) { b[0] = 'x' }, ErrBadMagic)
	bad(func(b []byte) { b[8] = 2 }, ErrBadVersion)
	bad(func(b []byte) { b[8] = 0 }, ErrBadVersion)
	bad(func(b []byte) { copy(b[24:], le32(0)) }, ErrBadSectorSize)
	bad(func(b []byte) { copy(b[24:], le32(1000)) }, ErrBadSectorSize)
	bad(func(b []byte) { copy(b[24:], le32(256)) }, ErrBadSectorSize)
	bad(func(b []byte) { copy(b[24:], le32(1<<30)) }, ErrBadSectorSize)
	_, err := Open(bytes.NewReader(make([]byte, 20)))
	require.ErrorIs(t, err, ErrTruncated)
}

// Test idea 19: malformed headers are errors naming the block.
func TestMalformedEntries(t *testing.T) {
	h := newHandLog(512)
	junk := h.header(0, 1, 0, 0, "")
	junk[100] = 1
	markFlush := h.header(0, 0, FlagMark|FlagFlush, 1, "x")
	markData := h.header(0, 2, FlagMark, 1, "x")
	longMark := h.header(0, 0, FlagMark, 481, "")
	overflow := h.header(1<<62, 1<<62, 0, 0, "")
	cases := map[string][]byte{
		"all zero":   make([]byte, 512),
		"junk":       append(junk, make([]byte, 512)...),
		"mark|flush": markFlush,
		"mark data":  markData,
		"long mark":  longMark,
		"overflow":   overflow,
	}
	for name, blk := range cases {
		t.Run(name, func(t *testing.T) {
			img := newHandLog(512).write(0, 0, fill(1024, 1)).mark("m").raw(blk).bytes(-1)
			l := openBytes(t, img)
			var n int
			var last error
			for _, err := range l.Entries() {
				if err != nil {
					last = err
					break
				}
				n++
			}
			require.Equal(t, 2, n)
			require.ErrorIs(t, last, ErrMalformed)
			var ee *EntryError
			require.True(t, errors.As(last, &ee))
			require.Equal(t, uint64(2), ee.Index)
			require.Equal(t, uint64(5), ee.Block) // 1 + (1+2) + 1
			require.Contains(t, last.Error(), "@5")
		})
	}
}

// A 4096-byte-sector log: junk anywhere in the header block is caught, and a
// 4.4-era mark of S-32 bytes (no terminator) is read.
func TestBigSector(t *testing.T) {
	h := newHandLog(4096)
	junk := h.header(0, 0, FlagFlush, 0, "")
	junk[4095] = 7
	l := openBytes(t, newHandLog(4096).raw(junk).bytes(-1))
	for _, err := range l.Entries() {
		require.ErrorIs(t, err, ErrMalformed)
	}
	name := string(fill(4096-32, 'q'))
	l = openBytes(t, newHandLog(4096).mark(name).bytes(-1))
	require.Equal(t, []entrySig{M(name)}, sigs(allEntries(t, l)))
}

// Test idea 18: a lagging count stops there; an overstated count or a
// truncated log is ErrTruncated.
func TestCounts(t *testing.T) {
	h := newHandLog(512).write(0, 0, fill(512, 1)).flush(FlagFlush).write(1, 0, fill(512, 2)).mark("m")
	require.Len(t, allEntries(t, openBytes(t, h.bytes(2))), 2)
	l := openBytes(t, h.bytes(6))
	var n int
	for _, err := range l.Entries() {
		if err != nil {
			require.ErrorIs(t, err, ErrTruncated)
			break
		}
		n++
	}
	require.Equal(t, 4, n)
	// Data cut short.
	img := h.bytes(-1)
	l = openBytes(t, img[:512*5+100])
	n = 0
	for _, err := range l.Entries() {
		if err != nil {
			require.ErrorIs(t, err, ErrTruncated)
			break
		}
		n++
	}
	require.Equal(t, 2, n)
}

// Test idea 13: unknown flag bits are preserved and the entry replays as a write.
func TestUnknownFlags(t *testing.T) {
	l := openBytes(t, newHandLog(512).write(2, 0x40|FlagMetadata, fill(512, 5)).bytes(-1))
	es := allEntries(t, l)
	require.Equal(t, Flags(0x50), es[0].Flags)
	require.Equal(t, "METADATA|UNKNOWN.0x40", es[0].Flags.String())
	target := newMem(4096)
	require.NoError(t, Replay(l, target, ReplayOptions{}))
	require.Equal(t, fill(512, 5), target.Bytes()[1024:1536])
}

func TestReadData(t *testing.T) {
	l := openBytes(t, newHandLog(512).write(0, 0, fill(1024, 3)).discard(4, 2).bytes(-1))
	es := allEntries(t, l)
	p := make([]byte, 1024)
	require.NoError(t, l.ReadData(es[0], p))
	require.Equal(t, fill(1024, 3), p)
	require.ErrorIs(t, l.ReadData(es[0], p[:512]), ErrInvalidEntry)
	p = fill(1024, 9)
	require.NoError(t, l.ReadData(es[1], p)) // a discard reads as zeros
	require.Equal(t, make([]byte, 1024), p)
}

func TestFlagsString(t *testing.T) {
	require.Equal(t, "NONE", Flags(0).String())
	require.Equal(t, "FLUSH|FUA|DISCARD|MARK|METADATA", Flags(0x1f).String())
}
