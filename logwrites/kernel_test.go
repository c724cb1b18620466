package logwrites

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

const kernelDir = "../testdata/log-writes/sector512"

// gunzip reads a gzip'd testdata file.
func gunzip(t testing.TB, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	zr, err := gzip.NewReader(f)
	require.NoError(t, err)
	b, err := io.ReadAll(zr)
	require.NoError(t, err)
	return b
}

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

func loadKernel(t testing.TB) (logImg, dataImg []byte, m kernelManifest) {
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
