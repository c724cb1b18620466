package logwrites

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/dmlog/dmlog/dirtylog/testdev"
	"github.com/stretchr/testify/require"
)

// New refuses a log device that is not blank — a previous log, a file
// system's super block, data anywhere in the checked bytes, a device it
// cannot read — with ErrLogDeviceNotBlank, writing nothing; a zeroed device,
// an empty or short file are blank; Options.Overwrite starts a log anyway.
func TestNewRefusesNonBlankLog(t *testing.T) {
	prev := testdev.NewMemory(1 << 20)
	rec, err := New(testdev.NewMemory(1<<20), prev, Options{})
	require.NoError(t, err)
	require.NoError(t, rec.Mark("old"))
	require.NoError(t, rec.Close())

	withAt := func(off int) *testdev.Memory {
		m := testdev.NewMemory(1 << 20)
		_, err := m.WriteAt([]byte{0x53, 0xef}, int64(off))
		require.NoError(t, err)
		return m
	}
	oneAt := func(off int) *testdev.Memory {
		m := testdev.NewMemory(1 << 20)
		_, err := m.WriteAt([]byte{1}, int64(off))
		require.NoError(t, err)
		return m
	}
	for name, tc := range map[string]struct {
		dev  *testdev.Memory
		what string
	}{
		"previous log":      {prev, "a dm-log-writes log"},
		"data at 0":         {withAt(0), "non-zero data (first non-zero byte at offset 0"},
		"ext4-like at 1KiB": {withAt(1024 + 56), "offset 1080"},
		"data at 100KiB":    {withAt(100 << 10), "offset 102400"},
		"one byte at 0":     {oneAt(0), "non-zero data (first non-zero byte at offset 0 of the 131072 bytes checked)"},
		"last checked byte": {oneAt(CheckedLogBytes - 1), "offset 131071 of the 131072 bytes checked"},
	} {
		t.Run(name, func(t *testing.T) {
			before := bytes.Clone(tc.dev.Bytes())
			_, err := New(testdev.NewMemory(1<<20), tc.dev, Options{})
			require.ErrorIs(t, err, ErrLogDeviceNotBlank)
			require.Contains(t, err.Error(), tc.what)
			require.Contains(t, err.Error(), "Options.Overwrite")
			require.Equal(t, before, tc.dev.Bytes(), "nothing written")

			rec, err := New(testdev.NewMemory(1<<20), tc.dev, Options{Overwrite: true})
			require.NoError(t, err)
			require.NoError(t, rec.Close())
			l := openBytes(t, tc.dev.Bytes())
			require.Equal(t, uint64(1), l.NumEntries())
		})
	}
	// Data beyond the checked bytes is not looked at.
	_, err = New(testdev.NewMemory(1<<20), withAt(CheckedLogBytes), Options{})
	require.NoError(t, err)
	// A write-only log device cannot be checked.
	_, err = New(testdev.NewMemory(1<<20), struct{ io.WriterAt }{testdev.NewMemory(1 << 20)}, Options{})
	require.ErrorIs(t, err, ErrLogDeviceNotBlank)
	require.Contains(t, err.Error(), "has no ReadAt")

	// Files: empty and zero-filled are blank; one holding data is not.
	dir := t.TempDir()
	for name, content := range map[string][]byte{"empty": nil, "zeros": make([]byte, 3000), "data": []byte("hello")} {
		path := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(path, content, 0o644))
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		require.NoError(t, err)
		rec, err := New(testdev.NewMemory(1<<20), f, Options{})
		if name == "data" {
			require.ErrorIs(t, err, ErrLogDeviceNotBlank)
			b, rerr := os.ReadFile(path)
			require.NoError(t, rerr)
			require.Equal(t, content, b, "the file is untouched")
		} else {
			require.NoError(t, err, name)
			require.NoError(t, rec.Close())
		}
		require.NoError(t, f.Close())
	}
}

// A second Close returns an error wrapping os.ErrClosed (the os.File
// convention) as well as ErrClosed; so do operations after Close.
func TestCloseTwice(t *testing.T) {
	rec, _, _ := newRec(t, Options{})
	require.NoError(t, rec.Close())
	err := rec.Close()
	require.ErrorIs(t, err, os.ErrClosed)
	require.ErrorIs(t, err, ErrClosed)
	require.ErrorIs(t, rec.Sync(), os.ErrClosed)
	_, err = rec.WriteAt(fill(512, 1), 0)
	require.ErrorIs(t, err, os.ErrClosed)
}

// Discard on an *os.File data device is applied, so the device equals the
// replay of its log: by a punched hole where the file system supports it
// (the range reads as zeros and, on Linux, its blocks are freed), and by
// writing zeros where it does not (forced here).
func TestDiscardOnFile(t *testing.T) {
	for _, punch := range []bool{true, false} {
		t.Run(map[bool]string{true: "punch", false: "zeros"}[punch], func(t *testing.T) {
			if !punch {
				saved := punchHole
				punchHole = func(*os.File, int64, int64) error { return errPunchUnsupported }
				t.Cleanup(func() { punchHole = saved })
			}
			path := filepath.Join(t.TempDir(), "dev")
			f, err := os.Create(path)
			require.NoError(t, err)
			defer f.Close()
			require.NoError(t, f.Truncate(4<<20))
			logDev := testdev.NewMemory(16 << 20)
			rec, err := New(f, logDev, Options{})
			require.NoError(t, err)
			_, err = rec.WriteAt(fill(2<<20, 0xab), 1<<20)
			require.NoError(t, err)
			require.NoError(t, rec.Sync())
			blocksBefore := allocatedBlocks(t, f)
			// Longer than discardZeroChunk, so that writing zeros takes
			// two chunks.
			const off, n = 1<<20 + 4096, discardZeroChunk + 8192
			require.NoError(t, rec.Discard(off, n))
			require.NoError(t, rec.Close())

			got, err := os.ReadFile(path)
			require.NoError(t, err)
			require.Len(t, got, 4<<20, "the size is kept")
			require.True(t, allZero(got[off:off+n]), "the discarded range reads as zeros")
			require.Equal(t, fill(off-1<<20, 0xab), got[1<<20:off], "the data before the discard is kept")
			require.Equal(t, fill(3<<20-(off+n), 0xab), got[off+n:3<<20], "the data after the discard is kept")
			target := testdev.NewMemory(4 << 20)
			require.NoError(t, Replay(openBytes(t, logDev.Bytes()), target, ReplayOptions{}))
			require.True(t, bytes.Equal(target.Bytes(), got), "the device equals the replay of its log")
			if after := allocatedBlocks(t, f); punch && blocksBefore >= 0 && after >= 0 {
				if after >= blocksBefore {
					t.Logf("the file system of %s did not free blocks for the hole (%d -> %d)", path, blocksBefore, after)
				} else {
					require.Less(t, after, blocksBefore)
				}
			}
		})
	}
}

// unreadable is a log device whose reads fail: nothing proves it blank.
type unreadable struct{ wrote int }

func (u *unreadable) ReadAt(p []byte, off int64) (int, error)  { return 0, syscall.EIO }
func (u *unreadable) WriteAt(p []byte, off int64) (int, error) { u.wrote += len(p); return len(p), nil }

// New refuses a log device it cannot read, writing nothing to it: a read
// error is not an empty device. Overwrite writes without reading.
func TestNewRefusesUnreadableLog(t *testing.T) {
	u := &unreadable{}
	_, err := New(testdev.NewMemory(1<<20), u, Options{})
	require.ErrorIs(t, err, syscall.EIO)
	require.ErrorIs(t, err, ErrLogDeviceNotBlank, "a log device that cannot be read cannot be proved blank")
	require.ErrorContains(t, err, "to check that it is blank")
	require.Zero(t, u.wrote, "nothing written to a log device that could not be read")

	rec, err := New(testdev.NewMemory(1<<20), u, Options{Overwrite: true})
	require.NoError(t, err)
	require.NotZero(t, u.wrote)
	require.NoError(t, rec.Close())
}
