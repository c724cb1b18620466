package logwrites

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/dmlog/dmlog/dirtylog/testdev"
	"github.com/dmlog/dmlog/internal/fixture"

	"github.com/stretchr/testify/require"
)

const kernelDir = "../testdata/log-writes/sector512"

// gunzip reads a gzip'd testdata file.
func gunzip(t testing.TB, path string) []byte { return fixture.Gunzip(t, path) }

func sha(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

type kernelManifest struct {
	DataDevice struct {
		Size   int64  `json:"size"`
		SHA256 string `json:"sha256"`
	} `json:"data_device"`
	LogDevice struct {
		Size   int64  `json:"size"`
		SHA256 string `json:"sha256"`
	} `json:"log_device"`
	Steps []struct {
		Type   string `json:"type"`
		Label  string `json:"label"`
		SHA256 string `json:"sha256"`
		Output string `json:"output"`
	} `json:"steps"`
}

var kernelOnce struct {
	sync.Mutex
	log, data []byte
	m         kernelManifest
}

// loadKernel returns the kernel fixture (decompressed and checked once per
// test binary; callers must not modify the slices).
func loadKernel(t testing.TB) (logImg, dataImg []byte, m kernelManifest) {
	t.Helper()
	kernelOnce.Lock()
	defer kernelOnce.Unlock()
	if kernelOnce.log == nil {
		kernelOnce.log, kernelOnce.data, kernelOnce.m = loadKernelFiles(t)
	}
	return kernelOnce.log, kernelOnce.data, kernelOnce.m
}

func loadKernelFiles(t testing.TB) (logImg, dataImg []byte, m kernelManifest) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(kernelDir, "manifest.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(raw, &m))
	logImg = gunzip(t, filepath.Join(kernelDir, "log.img.gz"))
	dataImg = gunzip(t, filepath.Join(kernelDir, "data.img.gz"))
	require.Equal(t, m.LogDevice.SHA256, sha(logImg))
	require.Equal(t, m.DataDevice.SHA256, sha(dataImg))
	return logImg, dataImg, m
}

// kernelEntries is what the kernel logged (testdata/README.md).
var kernelEntries = []struct {
	flags     Flags
	sector, n uint64
	mark      string
	pattern   byte // data pattern letter, 0 for none
	patOff    int64
}{
	{FlagMark, 0, 0, "mark1", 0, 0},
	{FlagFUA, 4096, 8, "", 'D', 0},
	{0, 0, 8, "", 'A', 0},
	{0, 2048, 128, "", 'B', 0},
	{0, 8193, 3, "", 'C', 0},
	{FlagFlush, 0, 0, "", 0, 0},
	{0, 0, 16, "", 'E', 0},
	{FlagFlush, 0, 0, "", 0, 0},
	{FlagMark, 0, 0, "mark2", 0, 0},
	{FlagDiscard, 2048, 128, "", 0, 0},
	{0, 14336, 256, "", 'F', 0},
	{0, 16383, 1, "", 'G', 0},
	{0, 6144, 8, "", 'H', 0},
	{0, 6152, 8, "", 'H', 4096},
	{FlagFlush, 0, 0, "", 0, 0},
	{FlagMark, 0, 0, "mark3", 0, 0},
	{FlagMark, 0, 0, EndMark, 0, 0},
}

func pattern(t testing.TB, letter byte) []byte {
	t.Helper()
	return gunzip(t, filepath.Join("../testdata/patterns", string(letter)+".bin.gz"))
}

func TestKernelLogEntries(t *testing.T) {
	logImg, _, _ := loadKernel(t)
	l, err := Open(bytes.NewReader(logImg))
	require.NoError(t, err)
	require.Equal(t, 512, l.SectorSize())
	require.Equal(t, uint64(len(kernelEntries)), l.NumEntries())
	var got []Entry
	for e, err := range l.Entries() {
		require.NoError(t, err)
		got = append(got, e)
	}
	require.Len(t, got, len(kernelEntries))
	block := uint64(1)
	for i, want := range kernelEntries {
		e := got[i]
		require.Equal(t, uint64(i), e.Index)
		require.Equal(t, block, e.Block, "entry %d", i)
		require.Equal(t, want.flags, e.Flags, "entry %d", i)
		require.Equal(t, want.sector, e.Sector, "entry %d", i)
		require.Equal(t, want.n, e.NrSectors, "entry %d", i)
		require.Equal(t, want.mark, e.Mark, "entry %d", i)
		if want.pattern != 0 {
			p := make([]byte, e.Length(512))
			require.NoError(t, l.ReadData(e, p))
			pat := pattern(t, want.pattern)
			require.Equal(t, pat[want.patOff:want.patOff+int64(len(p))], p, "entry %d data", i)
		}
		block = e.NextBlock()
	}
}

// TestRecorderReproducesKernelLog runs the kernel fixture's workload through
// a Recorder and compares the whole log device with the one the kernel
// wrote, byte for byte (bytes 28-31 of the super are zero in both), and the
// data device with the kernel's.
func TestRecorderReproducesKernelLog(t *testing.T) {
	logImg, _, m := loadKernel(t)
	dev := testdev.NewMemory(m.DataDevice.Size)
	logDev := testdev.NewMemory(m.LogDevice.Size)
	rec, err := New(dev, logDev, Options{SectorSize: 512})
	require.NoError(t, err)
	require.Equal(t, "0 0", rec.Status()) // "after-create" status
	w := func(letter byte, n int, off int64, f WriteFlags) {
		_, err := rec.WriteAtFlags(pattern(t, letter)[:n], off, f)
		require.NoError(t, err)
	}
	w('A', 4096, 0, 0)
	w('B', 65536, 1<<20, 0)
	w('C', 1536, 4194816, 0)
	require.NoError(t, rec.Mark("mark1"))
	w('D', 4096, 2<<20, FUA) // oflag=direct,sync: a FUA write ...
	require.NoError(t, rec.Sync())
	w('E', 8192, 0, 0)
	require.NoError(t, rec.Sync())
	require.NoError(t, rec.Discard(1<<20, 65536))
	require.NoError(t, rec.Mark("mark2"))
	w('F', 131072, 7<<20, 0)
	w('G', 512, 8388096, 0)
	h := pattern(t, 'H')
	_, err = rec.WriteAt(h[:4096], 3<<20) // buffered: two page writes
	require.NoError(t, err)
	_, err = rec.WriteAt(h[4096:8192], 3<<20+4096)
	require.NoError(t, err)
	require.NoError(t, rec.Sync())
	require.NoError(t, rec.Mark("mark3"))
	var final string
	for _, s := range m.Steps {
		if s.Type == "dm-status" && s.Label == "final" {
			final = s.Output
		}
	}
	require.Equal(t, "0 16384 log-writes "+rec.Status(), final)
	require.NoError(t, rec.Close())
	require.True(t, strings.HasPrefix(rec.Status(), "17 "), rec.Status())

	got := logDev.Bytes()
	want := bytes.Clone(logImg)
	copy(want[28:32], got[28:32]) // kernel padding; ours is zero
	require.True(t, bytes.Equal(want, got), "log differs from the kernel's")
	require.Equal(t, m.DataDevice.SHA256, sha(dev.Bytes()))
}

func TestKernelLogReplay(t *testing.T) {
	logImg, dataImg, m := loadKernel(t)
	l := openBytes(t, logImg)
	replay := func(o ReplayOptions) []byte {
		target := testdev.NewMemory(m.DataDevice.Size)
		require.NoError(t, Replay(l, target, o))
		require.Zero(t, target.Pending(), "Replay syncs the target")
		return target.Bytes()
	}
	t.Run("full", func(t *testing.T) {
		require.Equal(t, m.DataDevice.SHA256, sha(replay(ReplayOptions{})))
	})
	t.Run("mark3", func(t *testing.T) {
		var live string
		for _, s := range m.Steps {
			if s.Type == "sha256" && s.Label == "mark3" {
				live = s.SHA256
			}
		}
		got := replay(ReplayOptions{EndMark: "mark3"})
		require.Equal(t, live, sha(got))
		require.Equal(t, dataImg, got)
	})
	// At mark1 and mark2 the live device also held writes not yet flushed;
	// the log gives the flushed state, built here by hand from the patterns.
	t.Run("mark1", func(t *testing.T) {
		require.Equal(t, make([]byte, m.DataDevice.Size), replay(ReplayOptions{EndMark: "mark1"}))
	})
	t.Run("mark2", func(t *testing.T) {
		want := make([]byte, m.DataDevice.Size)
		copy(want[2<<20:], pattern(t, 'D')[:4096])
		copy(want[1<<20:], pattern(t, 'B')[:65536])
		copy(want[4194816:], pattern(t, 'C')[:1536])
		copy(want[0:], pattern(t, 'E')[:8192])
		got := replay(ReplayOptions{EndMark: "mark2"})
		require.Equal(t, want, got)
		for _, s := range m.Steps {
			if s.Type == "sha256" && s.Label == "mark2" {
				require.NotEqual(t, s.SHA256, sha(got), "the live device held unflushed writes")
			}
		}
	})
	t.Run("halves", func(t *testing.T) {
		target := testdev.NewMemory(m.DataDevice.Size)
		require.NoError(t, Replay(l, target, ReplayOptions{EndMark: "mark2"}))
		require.NoError(t, Replay(l, target, ReplayOptions{StartMark: "mark2"}))
		require.Equal(t, dataImg, target.Bytes())
	})
	t.Run("find", func(t *testing.T) {
		e, err := Find(l, ReplayOptions{EndMark: "mark2"})
		require.NoError(t, err)
		require.Equal(t, uint64(8), e.Index)
		e, err = Find(l, ReplayOptions{StartMark: "mark2", NextFlush: true})
		require.NoError(t, err)
		require.Equal(t, uint64(14), e.Index)
		e, err = Find(l, ReplayOptions{NextFUA: true})
		require.NoError(t, err)
		require.Equal(t, uint64(1), e.Index)
		require.Equal(t, uint64(1+1+1+8), e.NextBlock())
	})
}
