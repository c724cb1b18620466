package dirtylog_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dmlog/dmlog/dirtylog"
	"github.com/dmlog/dmlog/dirtylog/testdev"
)

func TestCoreKernelSemantics(t *testing.T) {
	ctx := context.Background()
	c, err := dirtylog.NewCore(dirtylog.Options{RegionSize: 1024, DeviceSize: 10 * 1024})
	require.NoError(t, err)
	// Default mode: clean but not in sync, as the kernel's core log.
	for r := dirtylog.Region(0); r < 10; r++ {
		clean, _ := c.IsClean(ctx, r)
		in, _ := c.InSync(ctx, r)
		require.True(t, clean)
		require.False(t, in)
	}
	// Ascending, skipping in-sync and recovering regions.
	c.SetRegionSync(0, true)
	r, ok, _ := c.ResyncWork(ctx)
	require.True(t, ok)
	require.EqualValues(t, 1, r)
	c.SetRegionSync(2, true)
	r, _, _ = c.ResyncWork(ctx)
	require.EqualValues(t, 3, r)
	// set_region_sync(r,0) changes the count only when r was in sync.
	require.EqualValues(t, 2, c.SyncCount())
	c.SetRegionSync(5, false)
	require.EqualValues(t, 2, c.SyncCount())
	c.SetRegionSync(2, false)
	require.EqualValues(t, 1, c.SyncCount())
	// Resume restarts the cursor: 1 and 3 are still recovering, 2 is
	// out of sync again.
	require.NoError(t, c.Resume(ctx))
	r, _, _ = c.ResyncWork(ctx)
	require.EqualValues(t, 2, r)
	require.Equal(t, "1 core", c.Status())
	require.Equal(t, "core 1 2 ", c.Table())
	require.NoError(t, c.Close())
	require.ErrorIs(t, c.Flush(ctx), dirtylog.ErrClosed)
}

func TestCoreBadGeometry(t *testing.T) {
	for _, o := range []dirtylog.Options{
		{RegionSize: 512, DeviceSize: 1 << 20},
		{RegionSize: 3072, DeviceSize: 1 << 20},
		{RegionSize: 1 << 21, DeviceSize: 1 << 20},
		{RegionSize: 1024, DeviceSize: 1 << 50}, // 2^40 regions: over UINT_MAX
	} {
		_, err := dirtylog.NewCore(o)
		require.ErrorIs(t, err, dirtylog.ErrBadRegionSize, "%+v", o)
		require.ErrorContains(t, err, "bytes", "the unit is named")
		require.ErrorContains(t, err, "Options.RegionSize", "the field is named")
	}
}

// TestMissingDeviceSize: a missing DeviceSize is reported as such, naming
// the field, the value and the unit, not as a bad region size.
func TestMissingDeviceSize(t *testing.T) {
	for _, tc := range []struct {
		ds   int64
		want string
	}{
		{0, "Options.DeviceSize is missing (0 bytes)"},
		{-4096, "Options.DeviceSize is -4096 bytes"},
	} {
		_, err := dirtylog.NewCore(dirtylog.Options{RegionSize: 1024, DeviceSize: tc.ds})
		require.ErrorIs(t, err, dirtylog.ErrBadOptions)
		require.NotErrorIs(t, err, dirtylog.ErrBadRegionSize)
		require.ErrorContains(t, err, tc.want)
		require.NotContains(t, err.Error(), "region size")
		_, err = dirtylog.OpenDisk(testdev.NewMemory(4096), dirtylog.Options{RegionSize: 1024, DeviceSize: tc.ds})
		require.ErrorIs(t, err, dirtylog.ErrBadOptions)
		require.ErrorContains(t, err, tc.want)
	}
	_, err := dirtylog.New("core", []string{"8"}, dirtylog.Env{})
	require.ErrorIs(t, err, dirtylog.ErrBadOptions)
	require.ErrorContains(t, err, "Env.DeviceSize is 0 bytes")
	_, err = dirtylog.OpenDisk(testdev.NewMemory(4096), dirtylog.Options{RegionSize: 1024, DeviceSize: 4096, LogicalBlockSize: 1000})
	require.ErrorIs(t, err, dirtylog.ErrBadOptions)
	require.ErrorContains(t, err, "Options.LogicalBlockSize is 1000 bytes")
}

func TestOptionalCapabilities(t *testing.T) {
	c, err := dirtylog.NewCore(dirtylog.Options{RegionSize: 1024, DeviceSize: 4096})
	require.NoError(t, err)
	d, err := dirtylog.OpenDisk(testdev.NewMemory(4096), dirtylog.Options{RegionSize: 1024, DeviceSize: 4096})
	require.NoError(t, err)
	require.True(t, dirtylog.IsLocal(c))
	require.True(t, dirtylog.IsVolatile(c))
	require.True(t, dirtylog.IsLocal(d))
	require.False(t, dirtylog.IsVolatile(d))
	// A wrapper that hides the methods is neither: the safe default.
	type wrapped struct{ dirtylog.Log }
	require.False(t, dirtylog.IsLocal(wrapped{c}))
	require.False(t, dirtylog.IsVolatile(wrapped{c}))
}
