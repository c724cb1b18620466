// Package lebitmap encodes bitsets in the kernel's on-disk bitmap layout:
// an array of little-endian 64-bit words, bit i of the set being bit i%64
// of word i/64 (so byte i/8, mask 1<<(i%8), LSB first).
//
// bitset.BitSet.WriteTo is not this layout (it writes a length prefix and
// big-endian words); use Encode and Decode instead.
package lebitmap

import (
	"encoding/binary"

	"github.com/bits-and-blooms/bitset"
)

// Bytes returns the size in bytes of an encoded bitmap of n bits, rounded
// up to whole 64-bit words as the kernel does on 64-bit hosts.
func Bytes(n uint64) uint64 { return (n + 63) / 64 * 8 }

// Encode writes the words of b into dst as little-endian uint64s. dst must
// hold Bytes(b.Len()) bytes; bytes of dst past the encoded words are left
// alone. It returns the number of bytes written.
func Encode(dst []byte, b *bitset.BitSet) int {
	return EncodeWords(dst, b.Words())
}

// EncodeWords writes words into dst as little-endian uint64s.
func EncodeWords(dst []byte, words []uint64) int {
	for i, w := range words {
		binary.LittleEndian.PutUint64(dst[i*8:], w)
	}
	return len(words) * 8
}

// Decode reads n bits from src (which must hold at least Bytes(n) bytes,
// or as many whole bytes as the bits need) into a new bitset. Bits at or
// beyond n in the last word are dropped.
func Decode(src []byte, n uint64) *bitset.BitSet {
	words := make([]uint64, (n+63)/64)
	DecodeWords(words, src)
	if r := n % 64; r != 0 && len(words) > 0 {
		words[len(words)-1] &= 1<<r - 1
	}
	b := bitset.FromWithLength(uint(n), words)
	return b
}

// DecodeWords fills words from src, little-endian; a short src leaves the
// remaining high bytes zero.
func DecodeWords(words []uint64, src []byte) {
	for i := range words {
		if len(src) >= 8 {
			words[i] = binary.LittleEndian.Uint64(src)
			src = src[8:]
			continue
		}
		var tmp [8]byte
		copy(tmp[:], src)
		words[i] = binary.LittleEndian.Uint64(tmp[:])
		src = nil
	}
}
