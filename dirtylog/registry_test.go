package dirtylog_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dmlog/dmlog/dirtylog"
)

const devSize = 1 << 30 // 2097152 sectors

func fileOpener(dir string) func(string) (dirtylog.Device, error) {
	return func(name string) (dirtylog.Device, error) {
		return os.OpenFile(filepath.Join(dir, name), os.O_RDWR, 0)
	}
}

func TestNewArgs(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "253:2"), make([]byte, 1<<20), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "small"), make([]byte, 4096), 0o600))
	env := dirtylog.Env{DeviceSize: devSize, Open: fileOpener(dir)}
	for _, tc := range []struct {
		typ     string
		args    []string
		err     error
		msg     string
		status  string
		table   string
		regions uint64
	}{
		{typ: "core", args: []string{"1024"}, status: "1 core", table: "core 1 1024 ", regions: 2048},
		{typ: "core", args: []string{"1024", "nosync"}, status: "1 core", table: "core 2 1024 nosync ", regions: 2048},
		{typ: "core", args: []string{"1024", "sync"}, status: "1 core", table: "core 2 1024 sync ", regions: 2048},
		{typ: "core", args: []string{"2"}, table: "core 1 2 ", status: "1 core", regions: 1 << 20},
		{typ: "core", args: []string{"1024k"}, err: dirtylog.ErrBadRegionSize, msg: "dirtylog: invalid region size 1024k"},
		{typ: "core", args: []string{"1024 "}, err: dirtylog.ErrBadRegionSize, msg: "invalid region size 1024 "},
		{typ: "core", args: []string{"1000"}, err: dirtylog.ErrBadRegionSize},
		{typ: "core", args: []string{"1"}, err: dirtylog.ErrBadRegionSize},
		{typ: "core", args: []string{"0"}, err: dirtylog.ErrBadRegionSize},
		{typ: "core", args: []string{"4194304"}, err: dirtylog.ErrBadRegionSize}, // > device
		{typ: "core", args: []string{"99999999999"}, err: dirtylog.ErrBadRegionSize},
		{typ: "core", args: []string{"1024", "Sync"}, err: dirtylog.ErrBadArgs, msg: "unrecognised sync argument to dirty region log: Sync"},
		{typ: "core", args: []string{"1024", "block_on_error"}, err: dirtylog.ErrBadArgs},
		{typ: "core", args: []string{"1024", "nosync", "block_on_error"}, err: dirtylog.ErrBadArgs, msg: "wrong number of arguments"},
		{typ: "core", args: nil, err: dirtylog.ErrBadArgs},
		{typ: "disk", args: []string{"253:2", "1024"}, status: "3 disk 253:2 A", table: "disk 2 253:2 1024 ", regions: 2048},
		{typ: "disk", args: []string{"253:2", "1024", "nosync"}, status: "3 disk 253:2 A", table: "disk 3 253:2 1024 nosync ", regions: 2048},
		{typ: "disk", args: []string{"253:2"}, err: dirtylog.ErrBadArgs, msg: "wrong number of arguments to disk dirty region log"},
		{typ: "disk", args: []string{"253:2", "1024", "nosync", "x"}, err: dirtylog.ErrBadArgs},
		{typ: "disk", args: []string{"253:2", "1024", "block_on_error"}, err: dirtylog.ErrBadArgs},
		{typ: "disk", args: []string{"missing", "1024"}, err: os.ErrNotExist},
		// A zeroed regular file shorter than the log is grown to it.
		{typ: "disk", args: []string{"small", "2"}, status: "3 disk small A", table: "disk 2 small 2 ", regions: 1 << 20},
		{typ: "nope", args: []string{"1024"}, err: dirtylog.ErrUnknownType},
	} {
		l, err := dirtylog.New(tc.typ, tc.args, env)
		if tc.err != nil {
			require.ErrorIs(t, err, tc.err, "%s %q", tc.typ, tc.args)
			if tc.msg != "" {
				require.ErrorContains(t, err, tc.msg)
			}
			continue
		}
		require.NoError(t, err, "%s %q", tc.typ, tc.args)
		require.Equal(t, tc.status, l.Status())
		require.Equal(t, tc.table, l.Table())
		require.Equal(t, tc.regions, l.RegionCount())
		require.NoError(t, l.Close())
	}
}

func TestNewPartialLastRegion(t *testing.T) {
	l, err := dirtylog.New("core", []string{"8"}, dirtylog.Env{DeviceSize: 10*4096 + 512})
	require.NoError(t, err)
	require.EqualValues(t, 11, l.RegionCount())
}

func TestRegisterAndNameFallback(t *testing.T) {
	called := 0
	require.NoError(t, dirtylog.Register("testonly", func(args []string, env dirtylog.Env) (dirtylog.Log, error) {
		called++
		return dirtylog.NewCore(dirtylog.Options{RegionSize: 1024, DeviceSize: env.DeviceSize})
	}))
	require.ErrorIs(t, dirtylog.Register("testonly", nil), dirtylog.ErrExists)
	require.Contains(t, dirtylog.Types(), "testonly")
	// "testonly-disk" is not registered: the kernel cuts at the last '-'.
	l, err := dirtylog.New("testonly-disk", nil, dirtylog.Env{DeviceSize: 4096})
	require.NoError(t, err)
	require.Equal(t, 1, called)
	require.NoError(t, l.Close())
	_, err = dirtylog.New("other-thing", nil, dirtylog.Env{DeviceSize: 4096})
	require.ErrorIs(t, err, dirtylog.ErrUnknownType)
}

func TestDiskOnFileSurvivesReopen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "log"), make([]byte, 4096), 0o600))
	env := dirtylog.Env{DeviceSize: devSize, Open: fileOpener(dir)}
	l, err := dirtylog.New("disk", []string{"log", "1024", "nosync"}, env)
	require.NoError(t, err)
	l.MarkRegion(77)
	require.NoError(t, l.Flush(ctx))
	require.NoError(t, l.Close())
	require.ErrorIs(t, l.Close(), dirtylog.ErrClosed)

	l, err = dirtylog.New("disk", []string{"log", "1024"}, env)
	require.NoError(t, err)
	defer l.Close()
	in, err := l.InSync(ctx, 77)
	require.NoError(t, err)
	require.False(t, in)
	require.EqualValues(t, 2047, l.SyncCount())
	r, ok, err := l.ResyncWork(ctx)
	require.NoError(t, err)
	require.True(t, ok)
	require.EqualValues(t, 77, r, "the region marked before the reopen is the resync work")
}
