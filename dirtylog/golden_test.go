package dirtylog_test

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dmlog/dmlog/dirtylog"
	"github.com/dmlog/dmlog/dirtylog/testdev"
	"github.com/dmlog/dmlog/internal/fixture"
)

// kernelImage reads a gzip'd disk-log capture written by the kernel.
func kernelImage(t testing.TB, name string) []byte {
	t.Helper()
	b := fixture.Gunzip(t, filepath.Join("..", "testdata", "mirror", name+".bin.gz"))
	require.Len(t, b, 1<<20)
	return b
}

const (
	kernelRegion = 1024 * dirtylog.SectorSize // "1024" in the tables
)

// TestGoldenDecode decodes every kernel capture: header, region count and
// the clean bits the manifest describes.
func TestGoldenDecode(t *testing.T) {
	for _, tc := range []struct {
		name  string
		nr    uint64
		dirty []dirtylog.Region
	}{
		{"A-live-after-create", 32, nil},
		{"A-live-after-writes", 32, nil},
		{"A-suspended", 32, nil},
		{"A-after-remove", 32, nil},
		{"B-live-synced", 40, nil},
		{"B-after-remove", 40, nil},
		{"D-live-after-create", 32, nil},
		{"D-live-after-failed-writes", 32, []dirtylog.Region{3, 10}},
		{"D-suspended", 32, []dirtylog.Region{3, 10}},
		{"D-after-remove", 32, []dirtylog.Region{3, 10}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := kernelImage(t, tc.name)
			img, err := dirtylog.ReadDiskImage(bytes.NewReader(b), int64(len(b)))
			require.NoError(t, err)
			require.EqualValues(t, dirtylog.DiskMagic, img.Header.Magic)
			require.EqualValues(t, 2, img.Header.Version)
			require.Equal(t, tc.nr, img.Header.NrRegions)
			require.Equal(t, tc.dirty, img.Dirty())
			require.EqualValues(t, int(tc.nr)-len(tc.dirty), img.Clean.Count())
			// Re-encoding the decoded state gives the kernel's bytes.
			enc := dirtylog.EncodeDiskImage(img.Header.NrRegions, img.Clean, 512)
			require.Equal(t, b[:len(enc)], enc)
			require.Equal(t, make([]byte, len(b)-len(enc)), b[len(enc):], "bytes past the log I/O are zero")
		})
	}
}

// TestGoldenEncode drives a Disk log through what the kernel's mirror did
// in each scenario and compares the device with the kernel's capture.
func TestGoldenEncode(t *testing.T) {
	ctx := context.Background()
	open := func(t *testing.T, dev *testdev.Memory, regions int64, mode dirtylog.SyncMode) *dirtylog.Disk {
		d, err := dirtylog.OpenDisk(dev, dirtylog.Options{
			RegionSize: kernelRegion, DeviceSize: regions * kernelRegion, Sync: mode,
			FlushCallback: func() error { return nil },
		})
		require.NoError(t, err)
		return d
	}

	t.Run("A: nosync, 32 regions, writes cleared", func(t *testing.T) {
		dev := testdev.NewMemory(1 << 20)
		d := open(t, dev, 32, dirtylog.NoSync)
		require.Equal(t, kernelImage(t, "A-live-after-create"), dev.Bytes())
		// 64 KiB in region 3, 4 KiB in region 20; both complete and clear.
		d.MarkRegion(3)
		d.MarkRegion(20)
		require.NoError(t, d.Flush(ctx))
		d.ClearRegion(3)
		d.ClearRegion(20)
		require.NoError(t, d.Flush(ctx))
		require.Equal(t, kernelImage(t, "A-live-after-writes"), dev.Bytes())
		require.NoError(t, d.Suspend(ctx))
		require.Equal(t, kernelImage(t, "A-suspended"), dev.Bytes())
		require.Equal(t, "3 disk log A", d.Status())
		require.Equal(t, "disk 3 log 1024 nosync ", d.Table())
	})

	t.Run("B: sync, 40 regions, full resync", func(t *testing.T) {
		dev := testdev.NewMemory(1 << 20)
		d := open(t, dev, 40, dirtylog.ForceSync)
		require.Zero(t, d.SyncCount())
		for {
			r, ok, err := d.ResyncWork(ctx)
			require.NoError(t, err)
			if !ok {
				break
			}
			// dm_rh_update_states: recovered ⇒ clear, then set in sync.
			d.ClearRegion(r)
			d.SetRegionSync(r, true)
			require.NoError(t, d.Flush(ctx))
		}
		require.EqualValues(t, 40, d.SyncCount())
		require.Equal(t, kernelImage(t, "B-live-synced"), dev.Bytes())
		require.NoError(t, d.Close())
		require.Equal(t, kernelImage(t, "B-after-remove"), dev.Bytes())
	})

	t.Run("D: failed leg leaves regions 3 and 10 dirty", func(t *testing.T) {
		dev := testdev.NewMemory(1 << 20)
		d := open(t, dev, 32, dirtylog.NoSync)
		require.Equal(t, kernelImage(t, "D-live-after-create"), dev.Bytes())
		for _, r := range []dirtylog.Region{3, 10} {
			d.MarkRegion(r)
			require.NoError(t, d.Flush(ctx))
			d.SetRegionSync(r, false) // the write failed on leg 2: NOSYNC, never cleared
		}
		require.EqualValues(t, 30, d.SyncCount())
		require.Equal(t, kernelImage(t, "D-live-after-failed-writes"), dev.Bytes())
		require.NoError(t, d.Close())
		require.Equal(t, kernelImage(t, "D-after-remove"), dev.Bytes())

		// Reactivating in the default mode trusts the bitmap: 3 and 10
		// come back out of sync.
		d2, err := dirtylog.OpenDisk(dev, dirtylog.Options{RegionSize: kernelRegion, DeviceSize: 32 * kernelRegion})
		require.NoError(t, err)
		require.EqualValues(t, 30, d2.SyncCount())
		var work []dirtylog.Region
		for {
			r, ok, err := d2.ResyncWork(ctx)
			require.NoError(t, err)
			if !ok {
				break
			}
			work = append(work, r)
		}
		require.Equal(t, []dirtylog.Region{3, 10}, work)
		require.Equal(t, kernelImage(t, "D-after-remove"), dev.Bytes(), "resume rewrote the same bytes")
	})
}
