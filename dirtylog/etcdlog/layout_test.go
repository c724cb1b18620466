package etcdlog

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dmlog/dmlog/dirtylog"
)

func TestMetaRoundTrip(t *testing.T) {
	m := Meta{Format: FormatVersion, RegionSize: 1 << 20, RegionCount: 1 << 20, ChunkRegions: chunkRegionsFor(1 << 20), Created: "nosync"}
	got, err := ParseMeta(m.encode())
	require.NoError(t, err)
	require.Equal(t, m, got)
}

func TestParseMetaErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		v    string
		want error
	}{
		"not json":      {`{"format":`, ErrCorrupt},
		"newer format":  {`{"format":2,"regionSize":1024,"regionCount":1,"chunkRegions":32768}`, ErrLayoutMismatch},
		"region size":   {`{"format":1,"regionSize":1000,"regionCount":1,"chunkRegions":32768}`, ErrCorrupt},
		"zero regions":  {`{"format":1,"regionSize":1024,"regionCount":0,"chunkRegions":32768}`, ErrCorrupt},
		"chunk size":    {`{"format":1,"regionSize":1024,"regionCount":10,"chunkRegions":64}`, ErrCorrupt},
		"huge count":    {`{"format":1,"regionSize":1024,"regionCount":99999999999,"chunkRegions":32768}`, ErrCorrupt},
		"wrong type":    {`{"format":"1"}`, ErrCorrupt},
		"giant payload": {`"` + string(make([]byte, 5000)) + `"`, ErrCorrupt},
	} {
		_, err := ParseMeta([]byte(tc.v))
		require.ErrorIs(t, err, tc.want, name)
	}
}

func FuzzParseMeta(f *testing.F) {
	f.Add([]byte(`{"format":1,"regionSize":65536,"regionCount":100,"chunkRegions":32768,"created":""}`))
	f.Add([]byte(`{"format":2}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseMeta(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrLayoutMismatch) {
				t.Fatalf("error %v wraps no sentinel", err)
			}
			return
		}
		again, err := ParseMeta(m.encode())
		if err != nil || again != m {
			t.Fatalf("re-encoded meta %+v: %+v, %v", m, again, err)
		}
	})
}

func TestKeysParse(t *testing.T) {
	k := keys{p: "/dirtylog/vol1/"}
	for key, want := range map[string]parsedKey{
		k.meta():                       {kind: kindMeta},
		k.node("node-a"):               {kind: kindNode, node: "node-a"},
		k.mark("node-a", 3):            {kind: kindMark, node: "node-a", chunk: 3},
		k.sync(31):                     {kind: kindSync, chunk: 31},
		k.pristine(2):                  {kind: kindPristine, chunk: 2},
		k.claim(dirtylog.Region(1e6)):  {kind: kindClaim, region: 1e6},
		k.prio(7):                      {kind: kindPrio, region: 7},
		k.recoverer():                  {kind: kindRecoverer},
		k.janitor() + "694d8f2a1b3c4d": {kind: kindOther},
	} {
		got, ok := k.parse(key)
		require.True(t, ok, key)
		require.Equal(t, want, got, key)
	}
	for _, bad := range []string{"/dirtylog/vol2/meta", "/dirtylog/vol1/sync/zz", "/dirtylog/vol1/marks/a/1", "/dirtylog/vol1/claim/12", "/dirtylog/vol1/node/"} {
		_, ok := k.parse(bad)
		require.False(t, ok, bad)
	}
}

func TestChunkSizing(t *testing.T) {
	require.EqualValues(t, 32768, chunkRegionsFor(100))
	require.EqualValues(t, 32768, chunkRegionsFor(1<<20))
	require.EqualValues(t, 65536, chunkRegionsFor(1<<20+1))
	require.EqualValues(t, maxChunkRegions, chunkRegionsFor(MaxRegions))
	for _, n := range []uint64{1, 1 << 20, 3 << 20, MaxRegions - 1, MaxRegions} {
		c := chunkRegionsFor(n)
		require.LessOrEqual(t, (n+c-1)/c, uint64(maxChunks), "regions %d", n)
		require.LessOrEqual(t, c, uint64(maxChunkRegions), "regions %d", n)
	}
	// The longest flush: every mark chunk and every pristine chunk as a
	// full bitmap, with their keys (a 128-byte node id) and compares.
	worst := 2*maxChunks*(1+maxChunkRegions/8+len("/dirtylog/")+128+len("/marks/")+128+9) + 64<<10
	require.Less(t, worst, 3<<19, "worst-case flush over etcd's 1.5 MiB default")
}

func TestOptionsValidation(t *testing.T) {
	good := Options{Name: "vol1", Node: "a", RegionSize: 1 << 16, DeviceSize: 1 << 20}
	_, _, err := good.geometry()
	require.NoError(t, err)
	for name, mut := range map[string]func(*Options){
		"empty name":  func(o *Options) { o.Name = "" },
		"slash node":  func(o *Options) { o.Node = "a/b" },
		"space name":  func(o *Options) { o.Name = "a b" },
		"region size": func(o *Options) { o.RegionSize = 1000 },
		"too big":     func(o *Options) { o.RegionSize = 1 << 21 },
		"no device":   func(o *Options) { o.DeviceSize = 0 },
		"too many":    func(o *Options) { o.RegionSize, o.DeviceSize = 1024, (MaxRegions+1)*1024 },
	} {
		o := good
		mut(&o)
		_, _, err := o.geometry()
		require.Error(t, err, name)
		require.True(t, errors.Is(err, ErrBadOptions) || errors.Is(err, dirtylog.ErrBadRegionSize), name)
	}
	// A missing DeviceSize is reported as such, with the field and the
	// unit, not as a bad region size.
	o := good
	o.DeviceSize = 0
	_, _, err = o.geometry()
	require.ErrorIs(t, err, ErrBadOptions)
	require.NotErrorIs(t, err, dirtylog.ErrBadRegionSize)
	require.ErrorContains(t, err, "Options.DeviceSize is missing (0 bytes)")
	o = good
	o.RegionSize = 1000
	_, _, err = o.geometry()
	require.ErrorContains(t, err, "Options.RegionSize is 1000 bytes")
	o = good
	o.RegionSize, o.DeviceSize = 1024, 16<<30 // 16 Mi regions
	_, _, err = o.geometry()
	require.ErrorIs(t, err, dirtylog.ErrBadRegionSize)
	require.ErrorContains(t, err, "region size of at least 4096")
	o.RegionSize = 4096
	count, _, err := o.geometry()
	require.NoError(t, err)
	require.EqualValues(t, MaxRegions, count)
}
