package etcdlog

import (
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestChunkRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []uint64{1, 63, 64, 65, 100, 4096, 32768} {
		nw := (n + 63) / 64
		tail := ^uint64(0)
		if n%64 != 0 {
			tail = 1<<(n%64) - 1
		}
		for _, density := range []float64{0, 0.001, 0.05, 0.5, 0.95, 0.999, 1} {
			words := make([]uint64, nw)
			for i := uint64(0); i < n; i++ {
				if rng.Float64() < density || density == 1 {
					words[i/64] |= 1 << (i % 64)
				}
			}
			words[nw-1] &= tail
			b := encodeChunk(words, n)
			got := make([]uint64, nw)
			require.NoError(t, decodeChunk(b, n, got), "n=%d density=%v tag=%d", n, density, b[0])
			require.Equal(t, words, got, "n=%d density=%v tag=%d", n, density, b[0])
			require.LessOrEqual(t, len(b), 1+8*int(nw), "never longer than a bitmap")
		}
	}
}

func TestChunkEncodingsAreCompact(t *testing.T) {
	const n = 32768
	words := make([]uint64, n/64)
	require.Equal(t, []byte{tagZeros}, encodeChunk(words, n))
	for i := range words {
		words[i] = ^uint64(0)
	}
	require.Equal(t, []byte{tagOnes}, encodeChunk(words, n))
	words[100] = 0 // 64 regions out of sync: a short zero list
	b := encodeChunk(words, n)
	require.EqualValues(t, tagZeroList, b[0])
	require.Less(t, len(b), 80)
	for i := range words {
		words[i] = 0
	}
	for _, r := range []int{3, 4000, 32767} { // a node's few marks
		words[r/64] |= 1 << (r % 64)
	}
	b = encodeChunk(words, n)
	require.EqualValues(t, tagSetList, b[0])
	require.Less(t, len(b), 10)
}

func TestChunkRejectsBadValues(t *testing.T) {
	dst := make([]uint64, 2)
	for name, b := range map[string][]byte{
		"empty":          {},
		"unknown tag":    {9},
		"zeros payload":  {tagZeros, 1},
		"short bitmap":   {tagBitmap, 1, 2, 3},
		"padding bits":   {tagBitmap, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80},
		"list count":     {tagSetList, 0xff, 0x01},
		"list truncated": {tagSetList, 3, 1},
		"list beyond":    {tagSetList, 1, 100},
		"list gap":       {tagSetList, 2, 1, 99},
		"list trailing":  {tagSetList, 1, 1, 7},
		"bad varint":     {tagSetList, 0x80},
	} {
		err := decodeChunk(b, 100, dst)
		require.Error(t, err, name)
		require.True(t, errors.Is(err, ErrCorrupt), "%s: %v", name, err)
	}
}

// FuzzChunk: decoding never panics or overruns, and whatever decodes
// re-encodes to a value that decodes to the same bits.
func FuzzChunk(f *testing.F) {
	f.Add([]byte{tagZeros}, uint16(100))
	f.Add([]byte{tagOnes}, uint16(64))
	f.Add([]byte{tagSetList, 2, 5, 7}, uint16(100))
	f.Add([]byte{tagZeroList, 1, 0}, uint16(1))
	f.Add(append([]byte{tagBitmap}, make([]byte, 16)...), uint16(128))
	f.Fuzz(func(t *testing.T, b []byte, n16 uint16) {
		n := uint64(n16%4096) + 1
		dst := make([]uint64, (n+63)/64)
		if err := decodeChunk(b, n, dst); err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		again := make([]uint64, len(dst))
		if err := decodeChunk(encodeChunk(dst, n), n, again); err != nil {
			t.Fatal(err)
		}
		for i := range dst {
			if dst[i] != again[i] {
				t.Fatalf("word %d: %x then %x", i, dst[i], again[i])
			}
		}
	})
}
