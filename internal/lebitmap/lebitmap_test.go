package lebitmap

import (
	"math/rand/v2"
	"testing"

	"github.com/bits-and-blooms/bitset"
	"github.com/stretchr/testify/require"
)

func TestKernelLayout(t *testing.T) {
	b := bitset.New(100)
	b.Set(0).Set(9).Set(64).Set(99)
	out := make([]byte, Bytes(100))
	require.Len(t, out, 16)
	require.Equal(t, 16, Encode(out, b))
	require.Equal(t, byte(0x01), out[0], "region 0: byte 0 bit 0")
	require.Equal(t, byte(0x02), out[1], "region 9: byte 1 mask 0x02")
	require.Equal(t, byte(0x01), out[8], "region 64: byte 8 bit 0")
	require.Equal(t, byte(0x08), out[12], "region 99: byte 12 mask 0x08")
}

func TestRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []uint64{1, 63, 64, 65, 1000, 4097} {
		b := bitset.New(uint(n))
		for i := uint64(0); i < n; i++ {
			if rng.IntN(3) == 0 {
				b.Set(uint(i))
			}
		}
		out := make([]byte, Bytes(n))
		Encode(out, b)
		got := Decode(out, n)
		require.True(t, b.Equal(got), "n=%d", n)
		// Bytes beyond n in the last word are dropped on decode.
		for i := range out {
			out[i] = 0xff
		}
		require.EqualValues(t, n, Decode(out, n).Count())
	}
}

func TestDecodeShortSource(t *testing.T) {
	got := Decode([]byte{0xff, 0x01}, 100)
	require.EqualValues(t, 9, got.Count())
}
