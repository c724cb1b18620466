package etcdlog

import (
	"encoding/binary"
	"fmt"
	"math/bits"
)

// A chunk value holds the bits of one chunk of regions (sync bits or one
// node's marks) in whichever of these encodings is shortest. The first
// byte is the tag.
const (
	tagZeros    = 0 // every bit 0; no payload
	tagOnes     = 1 // every bit 1; no payload
	tagBitmap   = 2 // little-endian uint64 words, ceil(n/64) of them, padding bits 0
	tagSetList  = 3 // uvarint k, then k uvarint gaps: the positions of the 1 bits
	tagZeroList = 4 // the same, listing the 0 bits
)

// encodeChunk encodes the first n bits of words.
func encodeChunk(words []uint64, n uint64) []byte {
	nw := int((n + 63) / 64)
	words = words[:nw]
	ones := 0
	for _, w := range words {
		ones += bits.OnesCount64(w)
	}
	switch {
	case ones == 0:
		return []byte{tagZeros}
	case uint64(ones) == n:
		return []byte{tagOnes}
	}
	bitmapLen := 1 + 8*nw
	zeros := int(n) - ones
	// A list entry costs 1-3 bytes; only try a list when it can win.
	if ones*3+11 < bitmapLen {
		if b := appendList(words, n, false); len(b) < bitmapLen {
			return b
		}
	}
	if zeros*3+11 < bitmapLen {
		if b := appendList(words, n, true); len(b) < bitmapLen {
			return b
		}
	}
	b := make([]byte, bitmapLen)
	b[0] = tagBitmap
	for i, w := range words {
		binary.LittleEndian.PutUint64(b[1+8*i:], w)
	}
	return b
}

func appendList(words []uint64, n uint64, zeros bool) []byte {
	var pos []uint64
	for i, w := range words {
		if zeros {
			w = ^w
			if i == len(words)-1 && n%64 != 0 {
				w &= 1<<(n%64) - 1
			}
		}
		for w != 0 {
			pos = append(pos, uint64(i)*64+uint64(bits.TrailingZeros64(w)))
			w &= w - 1
		}
	}
	tag := byte(tagSetList)
	if zeros {
		tag = tagZeroList
	}
	b := []byte{tag}
	b = binary.AppendUvarint(b, uint64(len(pos)))
	prev := uint64(0)
	for i, p := range pos {
		gap := p - prev
		if i > 0 {
			gap--
		}
		b = binary.AppendUvarint(b, gap)
		prev = p
	}
	return b
}

// decodeChunk decodes a chunk value of n bits into dst (ceil(n/64) words,
// overwritten). It never allocates and rejects anything encodeChunk would
// not produce for some bitmap: errors wrap ErrCorrupt.
func decodeChunk(b []byte, n uint64, dst []uint64) error {
	nw := int((n + 63) / 64)
	if len(dst) < nw || n == 0 {
		return fmt.Errorf("%w: chunk of %d bits into %d words", ErrCorrupt, n, len(dst))
	}
	dst = dst[:nw]
	tail := ^uint64(0)
	if n%64 != 0 {
		tail = 1<<(n%64) - 1
	}
	if len(b) == 0 {
		return fmt.Errorf("%w: empty chunk value", ErrCorrupt)
	}
	switch b[0] {
	case tagZeros, tagOnes:
		if len(b) != 1 {
			return fmt.Errorf("%w: chunk tag %d with %d payload bytes", ErrCorrupt, b[0], len(b)-1)
		}
		fill := uint64(0)
		if b[0] == tagOnes {
			fill = ^uint64(0)
		}
		for i := range dst {
			dst[i] = fill
		}
		dst[nw-1] &= tail
		return nil
	case tagBitmap:
		if len(b) != 1+8*nw {
			return fmt.Errorf("%w: bitmap chunk of %d bytes, want %d", ErrCorrupt, len(b), 1+8*nw)
		}
		for i := range dst {
			dst[i] = binary.LittleEndian.Uint64(b[1+8*i:])
		}
		if dst[nw-1]&^tail != 0 {
			return fmt.Errorf("%w: bitmap chunk has bits set beyond region %d", ErrCorrupt, n)
		}
		return nil
	case tagSetList, tagZeroList:
		p := b[1:]
		k, m := binary.Uvarint(p)
		if m <= 0 || k > n {
			return fmt.Errorf("%w: list chunk count", ErrCorrupt)
		}
		p = p[m:]
		for i := range dst {
			dst[i] = 0
		}
		pos := uint64(0)
		for i := uint64(0); i < k; i++ {
			gap, m := binary.Uvarint(p)
			if m <= 0 {
				return fmt.Errorf("%w: list chunk truncated at entry %d of %d", ErrCorrupt, i, k)
			}
			p = p[m:]
			if i > 0 {
				if gap >= n { // also keeps pos+gap+1 from overflowing
					return fmt.Errorf("%w: list chunk entry beyond region %d", ErrCorrupt, n)
				}
				gap++
			}
			pos += gap
			if pos >= n {
				return fmt.Errorf("%w: list chunk entry %d beyond region %d", ErrCorrupt, pos, n)
			}
			dst[pos/64] |= 1 << (pos % 64)
		}
		if len(p) != 0 {
			return fmt.Errorf("%w: %d trailing bytes after list chunk", ErrCorrupt, len(p))
		}
		if b[0] == tagZeroList {
			for i := range dst {
				dst[i] = ^dst[i]
			}
			dst[nw-1] &= tail
		}
		return nil
	}
	return fmt.Errorf("%w: unknown chunk tag %d", ErrCorrupt, b[0])
}
