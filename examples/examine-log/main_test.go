package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bits-and-blooms/bitset"
	"github.com/stretchr/testify/require"

	"github.com/dmlog/dmlog/dirtylog"
	"github.com/dmlog/dmlog/internal/fixture"
)

func TestKernelLogs(t *testing.T) {
	dir := t.TempDir()
	for name, want := range map[string]string{
		"D-after-remove": "magic: MiRr\nversion: 2\nregions: 32\nclean: 30\ndirty: 3,10\n",
		"B-live-synced":  "magic: MiRr\nversion: 2\nregions: 40\nclean: 40\ndirty: none\n",
	} {
		p := filepath.Join(dir, name)
		fixture.GunzipTo(t, filepath.Join("..", "..", "testdata", "mirror", name+".bin.gz"), p)
		var out bytes.Buffer
		require.NoError(t, run(&out, p))
		require.Equal(t, want, out.String())
	}
}

func TestGzipInput(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run(&out, filepath.Join("..", "..", "testdata", "mirror", "D-suspended.bin.gz")))
	require.Contains(t, out.String(), "dirty: 3,10\n")
}

func TestRanges(t *testing.T) {
	clean := func(n uint, dirty ...uint) *bitset.BitSet {
		b := bitset.New(n)
		for i := range n {
			b.Set(i)
		}
		for _, d := range dirty {
			b.Clear(d)
		}
		return b
	}
	require.Equal(t, "none", ranges(clean(50), 50))
	require.Equal(t, "0-3,17,40-41", ranges(clean(50, 0, 1, 2, 3, 17, 40, 41), 50))
	require.Equal(t, "0-49", ranges(bitset.New(50), 50))
	require.Equal(t, "48-49", ranges(clean(50, 48, 49), 50))
	require.Equal(t, "7", ranges(clean(8, 7), 8))
	// Padding bits past the last region are not regions.
	require.Equal(t, "none", ranges(clean(64), 60))
	require.Equal(t, "59", ranges(clean(64, 59, 60, 63), 60))
}

func TestNotALog(t *testing.T) {
	dir := t.TempDir()
	short := filepath.Join(dir, "short")
	require.NoError(t, os.WriteFile(short, []byte("MiRr"), 0o600))
	junk := filepath.Join(dir, "junk")
	require.NoError(t, os.WriteFile(junk, bytes.Repeat([]byte{0xAB}, 4096), 0o600))
	v3 := filepath.Join(dir, "v3")
	img := dirtylog.EncodeDiskImage(8, nil, 512)
	img[4] = 3
	require.NoError(t, os.WriteFile(v3, img, 0o600))
	for p, sentinel := range map[string]error{short: dirtylog.ErrTruncated, junk: dirtylog.ErrBadMagic, v3: dirtylog.ErrBadVersion} {
		err := run(io.Discard, p)
		require.True(t, errors.Is(err, sentinel), "%s: %v", p, err)
	}
}

// ranges is writeDirty into a string: the dirty regions below n of a
// clean bitmap.
func ranges(clean *bitset.BitSet, n uint64) string {
	var b strings.Builder
	w := bufio.NewWriter(&b)
	writeDirty(w, clean, n)
	w.Flush()
	return b.String()
}

func TestParseArgs(t *testing.T) {
	p, err := parseArgs([]string{"log.img"}, io.Discard)
	require.NoError(t, err)
	require.Equal(t, "log.img", p)
	p, err = parseArgs([]string{"--", "-odd-name"}, io.Discard)
	require.NoError(t, err)
	require.Equal(t, "-odd-name", p)
	var usage bytes.Buffer
	_, err = parseArgs([]string{"-h"}, &usage)
	require.ErrorIs(t, err, flag.ErrHelp)
	require.Contains(t, usage.String(), "usage: examine-log FILE")
	for _, args := range [][]string{{}, {"a", "b"}, {"-x", "a"}} {
		_, err := parseArgs(args, io.Discard)
		require.Error(t, err, "%q", args)
		require.NotContains(t, err.Error(), "\n")
	}
}
