package dirtylog_test

import (
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dmlog/dmlog/dirtylog"
	"github.com/dmlog/dmlog/dirtylog/testdev"
)

// fileSum returns the sha256 and the size of the file at path.
func fileSum(t *testing.T, path string) ([32]byte, int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return sha256.Sum256(b), int64(len(b))
}

func openRW(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	return f
}

// TestOpenDiskRefusesData: a file holding data that is not a dm disk log
// is refused with ErrNotLog and left byte for byte as it was, whether its
// first bytes are data or zeroes (a file system with its superblock at
// byte 1024, as ext4 has, looks like that).
func TestOpenDiskRefusesData(t *testing.T) {
	dir := t.TempDir()
	o := dirtylog.Options{RegionSize: 64 << 10, DeviceSize: 64 << 20, Name: "data"}
	for _, tc := range []struct {
		name, want string
		data       []byte
	}{
		{"text", "found 69 6d 70 6f 72 74 61 6e 74 20 64 61 74 61 0a 00 at byte 0",
			append([]byte("important data\n"), make([]byte, 8<<20)...)},
		{"superblock at 1024", "no dm disk log header at byte 0, yet byte 1080 of the 1536 bytes the log would write holds 0x53",
			append(append(make([]byte, 1080), 0x53, 0xef), make([]byte, 8<<20)...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_"))
			require.NoError(t, os.WriteFile(path, tc.data, 0o600))
			sum, size := fileSum(t, path)
			for _, m := range []dirtylog.SyncMode{dirtylog.DefaultSync, dirtylog.ForceSync, dirtylog.NoSync} {
				o.Sync = m
				_, err := dirtylog.OpenDisk(openRW(t, path), o)
				require.ErrorIs(t, err, dirtylog.ErrNotLog)
				require.ErrorContains(t, err, tc.want)
				require.ErrorContains(t, err, "data: ", "the message names the device")
				gotSum, gotSize := fileSum(t, path)
				require.Equal(t, size, gotSize)
				require.Equal(t, sum, gotSum, "a refused file is unchanged")
			}
			// Asked to, OpenDisk formats it as the kernel would.
			o.Sync, o.Format = dirtylog.DefaultSync, true
			d, err := dirtylog.OpenDisk(openRW(t, path), o)
			require.NoError(t, err)
			require.EqualValues(t, 0, d.SyncCount(), "a new log over old data resyncs everything")
			require.NoError(t, d.Close())
			o.Format = false
		})
	}
}

// TestOpenDiskGrowsShortFile: an empty or short zeroed regular file is
// grown to DiskLogSize; a short file with foreign data is refused and not
// grown; a device that cannot grow is refused, naming the bytes needed.
func TestOpenDiskGrowsShortFile(t *testing.T) {
	dir := t.TempDir()
	o := dirtylog.Options{RegionSize: 4096, DeviceSize: 64 << 20, Name: "log"} // 16384 regions
	need, err := dirtylog.DiskLogSize(o.DeviceSize, o.RegionSize, 0)
	require.NoError(t, err)
	require.EqualValues(t, 1024+16384/8, need)
	for _, size := range []int{0, 512, 1024, int(need) - 1} {
		path := filepath.Join(dir, "zero")
		require.NoError(t, os.WriteFile(path, make([]byte, size), 0o600))
		d, err := dirtylog.OpenDisk(openRW(t, path), o)
		require.NoError(t, err, "a zeroed file of %d bytes", size)
		_, got := fileSum(t, path)
		require.Equal(t, need, got, "grown from %d bytes", size)
		d.MarkRegion(16383)
		require.NoError(t, d.Close())
		img, err := dirtylog.ReadDiskImage(openRW(t, path), need)
		require.NoError(t, err)
		require.EqualValues(t, 16384, img.Header.NrRegions)
	}

	path := filepath.Join(dir, "short-data")
	require.NoError(t, os.WriteFile(path, []byte("#!/bin/sh\necho not a log\n"), 0o600))
	sum, size := fileSum(t, path)
	_, err = dirtylog.OpenDisk(openRW(t, path), o)
	require.ErrorIs(t, err, dirtylog.ErrNotLog)
	gotSum, gotSize := fileSum(t, path)
	require.Equal(t, size, gotSize, "a short file with data is not grown")
	require.Equal(t, sum, gotSum)

	_, err = dirtylog.OpenDisk(testdev.NewMemory(2048), o)
	require.ErrorIs(t, err, dirtylog.ErrLogDeviceTooSmall)
	require.EqualError(t, err, "dirtylog: log device too small: log holds 2048 bytes; a log of 16384 regions with 512-byte blocks needs 3072 bytes (DiskLogSize)")
	// A device of 0 bytes is too small too (its Size is known), not one
	// that cannot be read.
	_, err = dirtylog.OpenDisk(testdev.NewMemory(0), o)
	require.ErrorIs(t, err, dirtylog.ErrLogDeviceTooSmall)
	require.ErrorContains(t, err, "log holds 0 bytes; a log of 16384 regions with 512-byte blocks needs 3072 bytes")

	_, err = dirtylog.DiskLogSize(0, 4096, 0)
	require.ErrorIs(t, err, dirtylog.ErrBadOptions)
	_, err = dirtylog.DiskLogSize(1<<20, 1000, 0)
	require.ErrorIs(t, err, dirtylog.ErrBadRegionSize)
	_, err = dirtylog.DiskLogSize(1<<20, 4096, 1000)
	require.ErrorIs(t, err, dirtylog.ErrBadOptions)
	got, err := dirtylog.DiskLogSize(1<<20, 4096, 4096)
	require.NoError(t, err)
	require.EqualValues(t, 4096, got)
}

// TestOpenDiskClaimsFile: a second opener of a log file, through another
// open file or the same *os.File, gets ErrInUse and writes nothing; Close
// releases the claim.
func TestOpenDiskClaimsFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	require.NoError(t, os.WriteFile(path, nil, 0o600))
	o := dirtylog.Options{RegionSize: 4096, DeviceSize: 1 << 20, Name: "log"}
	f := openRW(t, path)
	d, err := dirtylog.OpenDisk(f, o)
	require.NoError(t, err)
	d.MarkRegion(7)
	require.NoError(t, d.Flush(t.Context()))
	sum, _ := fileSum(t, path)

	for name, dev := range map[string]*os.File{"another open file": openRW(t, path), "the same *os.File": f} {
		for _, m := range []dirtylog.SyncMode{dirtylog.DefaultSync, dirtylog.NoSync} {
			o.Sync = m
			_, err = dirtylog.OpenDisk(dev, o)
			require.ErrorIs(t, err, dirtylog.ErrInUse, name)
			require.ErrorContains(t, err, "log device log", name)
			got, _ := fileSum(t, path)
			require.Equal(t, sum, got, "%s: the second opener wrote nothing", name)
		}
	}
	// New through an opener is claimed the same way.
	env := dirtylog.Env{DeviceSize: 1 << 20, Open: fileOpener(filepath.Dir(path))}
	_, err = dirtylog.New("disk", []string{"log", "8"}, env)
	require.ErrorIs(t, err, dirtylog.ErrInUse)

	require.NoError(t, d.Close())
	o.Sync = dirtylog.DefaultSync
	d, err = dirtylog.OpenDisk(openRW(t, path), o)
	require.NoError(t, err, "Close released the claim")
	in, err := d.InSync(t.Context(), 7)
	require.NoError(t, err)
	require.False(t, in, "the region marked (and never cleared) before Close is resync work")
	require.NoError(t, d.Close())
	l, err := dirtylog.New("disk", []string{"log", "8"}, env)
	require.NoError(t, err)
	require.NoError(t, l.Close())
}

// TestNewDiskSafety: the table path refuses the same things, and Env
// carries the explicit Format and Resize.
func TestNewDiskSafety(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "log")
	require.NoError(t, os.WriteFile(path, []byte("a file system, not a log"), 0o600))
	sum, _ := fileSum(t, path)
	env := dirtylog.Env{DeviceSize: 1 << 20, Open: fileOpener(dir)}
	_, err := dirtylog.New("disk", []string{"log", "8"}, env)
	require.ErrorIs(t, err, dirtylog.ErrNotLog)
	got, _ := fileSum(t, path)
	require.Equal(t, sum, got)

	env.Format = true
	l, err := dirtylog.New("disk", []string{"log", "8"}, env) // 256 regions of 4 KiB
	require.NoError(t, err)
	require.NoError(t, l.Close())
	env.Format = false

	_, err = dirtylog.New("disk", []string{"log", "16"}, env) // 128 regions
	require.ErrorIs(t, err, dirtylog.ErrGeometry)
	require.ErrorContains(t, err, "holds a log of 256 regions, the options give 128 regions of 8192 bytes")
	env.Resize = true
	l, err = dirtylog.New("disk", []string{"log", "16"}, env)
	require.NoError(t, err)
	require.EqualValues(t, 128, l.RegionCount())
	require.NoError(t, l.Close())
}

// TestOpenDiskReclaimsSameFile: Close (and a refused OpenDisk) drop the
// claim on the very *os.File they were handed, not only its flock: the
// same *os.File opens again, and so does another open file of the path.
func TestOpenDiskReclaimsSameFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "log")
	require.NoError(t, os.WriteFile(path, nil, 0o600))
	o := dirtylog.Options{RegionSize: 4096, DeviceSize: 1 << 20, Name: "log"}
	f := openRW(t, path)
	for i := range 3 {
		d, err := dirtylog.OpenDisk(f, o)
		require.NoError(t, err, "open %d of the same *os.File", i)
		require.NoError(t, d.Close())
	}
	d, err := dirtylog.OpenDisk(openRW(t, path), o)
	require.NoError(t, err, "another open file after the same *os.File was closed")
	require.NoError(t, d.Close())

	// A refused open releases the same *os.File too.
	o2 := o
	o2.RegionSize = 8192 // another region count: ErrGeometry
	_, err = dirtylog.OpenDisk(f, o2)
	require.ErrorIs(t, err, dirtylog.ErrGeometry)
	d, err = dirtylog.OpenDisk(f, o)
	require.NoError(t, err, "the same *os.File after a refused open")
	require.NoError(t, d.Close())
}

// blockDevice looks like a block device *os.File: Stat says ModeDevice
// (size 0), its size is where a seek to the end lands, and it has no
// Size method.
type blockDevice struct {
	mem *testdev.Memory
	pos int64
}

type blockDeviceInfo struct{ os.FileInfo }

func (blockDeviceInfo) Mode() os.FileMode { return os.ModeDevice }
func (blockDeviceInfo) Size() int64       { return 0 }

func (b *blockDevice) ReadAt(p []byte, off int64) (int, error)  { return b.mem.ReadAt(p, off) }
func (b *blockDevice) WriteAt(p []byte, off int64) (int, error) { return b.mem.WriteAt(p, off) }
func (b *blockDevice) Sync() error                              { return b.mem.Sync() }
func (b *blockDevice) Stat() (os.FileInfo, error)               { return blockDeviceInfo{}, nil }
func (b *blockDevice) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekCurrent:
		b.pos += off
	case io.SeekEnd:
		b.pos = b.mem.Size() + off
	default:
		b.pos = off
	}
	return b.pos, nil
}

// TestOpenDiskShortBlockDevice: a block device cannot grow, so one
// shorter than DiskLogSize is refused with the bytes it holds and needs
// (learned by seeking to its end, the offset put back) and is not
// written; one of exactly DiskLogSize bytes opens.
func TestOpenDiskShortBlockDevice(t *testing.T) {
	o := dirtylog.Options{RegionSize: 4096, DeviceSize: 64 << 20, Name: "blk"} // needs 3072 bytes
	short := &blockDevice{mem: testdev.NewMemory(2048), pos: 77}
	_, err := dirtylog.OpenDisk(short, o)
	require.ErrorIs(t, err, dirtylog.ErrLogDeviceTooSmall)
	require.ErrorContains(t, err, "blk holds 2048 bytes; a log of 16384 regions with 512-byte blocks needs 3072 bytes")
	require.EqualValues(t, 77, short.pos, "the seek offset is put back")
	require.Equal(t, make([]byte, 2048), short.mem.Bytes(), "a refused device is not written")

	exact := &blockDevice{mem: testdev.NewMemory(3072)}
	d, err := dirtylog.OpenDisk(exact, o)
	require.NoError(t, err)
	require.NoError(t, d.Close())
}

// TestOpenDiskInUseThenFree: an OpenDisk refused because another open
// file holds the lock leaves no claim behind: once the other lets go, the
// same *os.File opens.
func TestOpenDiskInUseThenFree(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	require.NoError(t, os.WriteFile(path, nil, 0o600))
	o := dirtylog.Options{RegionSize: 4096, DeviceSize: 1 << 20, Name: "log"}
	first, err := dirtylog.OpenDisk(openRW(t, path), o)
	require.NoError(t, err)
	f := openRW(t, path)
	_, err = dirtylog.OpenDisk(f, o)
	require.ErrorIs(t, err, dirtylog.ErrInUse)
	require.NoError(t, first.Close())
	d, err := dirtylog.OpenDisk(f, o)
	require.NoError(t, err, "the same *os.File once the other opener closed")
	require.NoError(t, d.Close())
}
