package logwrites

import (
	"errors"
	"fmt"
	"hash/maphash"
	"io"
)

// This file holds the copy-on-write overlay that crash states are built
// from: a persistent radix tree mapping 512-byte device blocks to their
// contents, over an unchanging base image. Applying a write copies only the
// path from the root to the blocks it touches (the old tree stays valid), so
// a state derived from another costs time proportional to what it adds, and
// every state ever handed out can be read concurrently without locks.

const (
	blockShift = 9
	blockSize  = 1 << blockShift // tear and overlay granularity (bytes)
	fanBits    = 6
	fanout     = 1 << fanBits
)

// blk is the immutable content of one 512-byte block and its hash.
type blk struct {
	data *[blockSize]byte
	h    sum128 // two independent 64-bit hashes of data
}

var (
	hashSeeds = [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}
	zeroData  [blockSize]byte
	zeroBlk   = &blk{data: &zeroData, h: blockHash(zeroData[:])}
)

// blockHash is the 128-bit hash of a block's content.
func blockHash(b []byte) sum128 {
	return sum128{maphash.Bytes(hashSeeds[0], b), maphash.Bytes(hashSeeds[1], b)}
}

// newBlks splits data (a multiple of blockSize long) into hashed blocks that
// share data's memory.
func newBlks(data []byte) []blk {
	bs := make([]blk, len(data)/blockSize)
	for i := range bs {
		d := (*[blockSize]byte)(data[i*blockSize:])
		bs[i] = blk{data: d, h: blockHash(d[:])}
	}
	return bs
}

// sum128 is a 128-bit hash of a subtree's content, relative to its position.
type sum128 [2]uint64

func mix64(x uint64) uint64 { // splitmix64 finaliser
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// childSum is the contribution of a child with hash s at slot j of a node at
// the given level. Sums of these over the slots form the node's hash, so a
// node's hash changes in O(1) when one child changes.
func childSum(level, j int, s sum128) sum128 {
	k := uint64(level)<<8 | uint64(j)
	return sum128{
		mix64(s[0] ^ (k+1)*0x9e3779b97f4a7c15),
		mix64(s[1] + (k+7)*0xc2b2ae3d27d4eb4f ^ 0x5555555555555555),
	}
}

func (s sum128) add(t sum128) sum128 { return sum128{s[0] + t[0], s[1] + t[1]} }
func (s sum128) sub(t sum128) sum128 { return sum128{s[0] - t[0], s[1] - t[1]} }

// node is a radix-tree node. Level-0 nodes hold blocks, higher levels hold
// children; a nil slot means "the base image's content". Nodes are never
// modified once they are reachable from a published overlay.
type node struct {
	sum  sum128
	cnt  int32          // non-nil slots
	kids *[fanout]*node // level > 0
	blks *[fanout]*blk  // level 0
}

type innerAlloc struct {
	n node
	a [fanout]*node
}

type leafAlloc struct {
	n node
	a [fanout]*blk
}

func newNode(level int) *node {
	if level == 0 {
		la := new(leafAlloc)
		la.n.blks = &la.a
		return &la.n
	}
	ia := new(innerAlloc)
	ia.n.kids = &ia.a
	return &ia.n
}

func (n *node) clone(level int) *node {
	c := newNode(level)
	if n == nil {
		return c
	}
	c.sum, c.cnt = n.sum, n.cnt
	if level == 0 {
		*c.blks = *n.blks
	} else {
		*c.kids = *n.kids
	}
	return c
}

// overlayShape is what every overlay of one exploration shares: the base
// image, its size and the tree's height, plus the shared all-zero subtrees
// that discards use.
type overlayShape struct {
	base    io.ReaderAt
	size    int64  // device size in bytes
	nblocks uint64 // ceil(size / blockSize)
	levels  int    // tree height; level levels-1 is the root
	zero    []*node
}

func newShape(base io.ReaderAt, size int64) (*overlayShape, error) {
	if size <= 0 {
		return nil, fmt.Errorf("%w: size %d", ErrDeviceSize, size)
	}
	nb := (uint64(size) + blockSize - 1) / blockSize
	levels := 1
	for span := uint64(fanout); span < nb; span <<= fanBits {
		levels++
	}
	sh := &overlayShape{base: base, size: size, nblocks: nb, levels: levels}
	// Shared all-zero subtrees, one per level; their hashes equal those of
	// subtrees zeroed block by block, so de-duplication sees them as equal.
	sh.zero = make([]*node, levels)
	for l := range levels {
		n := newNode(l)
		for j := range fanout {
			if l == 0 {
				n.blks[j] = zeroBlk
				n.sum = n.sum.add(slotSum(j, zeroBlk))
			} else {
				n.kids[j] = sh.zero[l-1]
				n.sum = n.sum.add(kidSum(l, j, sh.zero[l-1]))
			}
			n.cnt++
		}
		sh.zero[l] = n
	}
	return sh, nil
}

// span returns the number of blocks a node at level covers.
func span(level int) uint64 { return 1 << (fanBits * (level + 1)) }

// overlay is one immutable device image: base plus the blocks in the tree.
// The zero value of *node (nil root) is the base image itself.
type overlay struct {
	sh   *overlayShape
	root *node
}

// hash returns the 128-bit hash of the overlay's content. Two overlays with
// the same blocks (whatever writes produced them) have the same hash.
func (o overlay) hash() sum128 {
	if o.root == nil {
		return sum128{}
	}
	return o.root.sum
}

// xsrc is what one entry writes, block by block, from device block start:
// its data (zeros for a discard), and which blocks equal the base image's
// (those are stored as "base", so that the overlay stays canonical: a slot
// is set exactly when the block differs from the base, and equal images
// have equal overlays and equal hashes).
type xsrc struct {
	start uint64
	n     uint64
	blks  []blk // nil: zeros
	// Which blocks equal the base: all of them, none, or (sameCnt != nil)
	// sameCnt[i] = how many of the first i do.
	all, none bool
	sameCnt   []uint32
}

// newSrc builds the source of n blocks at start, comparing them with the
// base image (one read of the range; none for a nil base).
func (sh *overlayShape) newSrc(start, n uint64, blks []blk) (*xsrc, error) {
	s := &xsrc{start: start, n: n, blks: blks}
	if sh.base == nil && blks == nil {
		s.all = true // zeros over an all-zero base
		return s, nil
	}
	cnt := make([]uint32, n+1)
	var buf []byte
	if sh.base != nil {
		buf = make([]byte, min(n, 2048)<<blockShift)
	}
	for done := uint64(0); done < n; {
		m := min(n-done, 2048)
		if buf != nil {
			buf = buf[:m<<blockShift]
			if err := sh.read(nil, 0, 0, buf, int64(start+done)<<blockShift); err != nil {
				return nil, err
			}
		}
		for i := range m {
			var same bool
			switch {
			case buf == nil: // all-zero base, data write
				same = *blks[done+i].data == zeroData
			case blks == nil:
				same = allZero(buf[i<<blockShift : (i+1)<<blockShift])
			default:
				same = *blks[done+i].data == [blockSize]byte(buf[i<<blockShift:])
			}
			cnt[done+i+1] = cnt[done+i]
			if same {
				cnt[done+i+1]++
			}
		}
		done += m
	}
	switch uint64(cnt[n]) {
	case n:
		s.all = true
	case 0:
		s.none = true
	default:
		s.sameCnt = cnt
	}
	return s, nil
}

// same reports how many of blocks [lo, hi) equal the base.
func (s *xsrc) same(lo, hi uint64) uint64 {
	switch {
	case s.all:
		return hi - lo
	case s.none:
		return 0
	}
	return uint64(s.sameCnt[hi-s.start] - s.sameCnt[lo-s.start])
}

// write returns a new overlay with blocks [lo, hi) (within src's range)
// set from src. o is not changed.
func (o overlay) write(src *xsrc, lo, hi uint64) overlay {
	if lo >= hi {
		return o
	}
	return overlay{sh: o.sh, root: o.sh.set(o.root, o.sh.levels-1, 0, lo, hi, src)}
}

// slotSum is a leaf slot's contribution to its node's hash.
func slotSum(j int, b *blk) sum128 {
	if b == nil {
		return sum128{}
	}
	return childSum(0, j, b.h)
}

// kidSum is a child's contribution to its parent's hash; an absent child
// (all base) contributes nothing.
func kidSum(level, j int, n *node) sum128 {
	if n == nil {
		return sum128{}
	}
	return childSum(level, j, n.sum)
}

// set returns a copy of n (a node at level covering blocks from start) with
// blocks [lo, hi) set from src; nil if the result is all base.
func (sh *overlayShape) set(n *node, level int, start, lo, hi uint64, src *xsrc) *node {
	sp := span(level)
	if lo <= start && start+sp <= hi {
		// The whole subtree is written.
		switch src.same(start, start+sp) {
		case sp:
			return nil // the base's content throughout
		case 0:
			if src.blks == nil {
				return sh.zero[level]
			}
		}
	}
	c := n.clone(level)
	if level == 0 {
		for b := max(lo, start); b < min(hi, start+sp); b++ {
			j := int(b - start)
			old := c.blks[j]
			var nb *blk
			switch {
			case src.same(b, b+1) == 1:
			case src.blks == nil:
				nb = zeroBlk
			default:
				nb = &src.blks[b-src.start]
			}
			c.sum = c.sum.sub(slotSum(j, old)).add(slotSum(j, nb))
			c.blks[j] = nb
			switch {
			case old == nil && nb != nil:
				c.cnt++
			case old != nil && nb == nil:
				c.cnt--
			}
		}
	} else {
		child := sp >> fanBits
		first := (max(lo, start) - start) / child
		last := (min(hi, start+sp) - 1 - start) / child
		for j := int(first); j <= int(last); j++ {
			old := c.kids[j]
			nk := sh.set(old, level-1, start+uint64(j)*child, lo, hi, src)
			c.sum = c.sum.sub(kidSum(level, j, old)).add(kidSum(level, j, nk))
			c.kids[j] = nk
			switch {
			case old == nil && nk != nil:
				c.cnt++
			case old != nil && nk == nil:
				c.cnt--
			}
		}
	}
	if c.cnt == 0 {
		return nil
	}
	return c
}

// ReadAt reads the overlay's image: overlay blocks where present, the base
// elsewhere. Reads beyond the device size return io.EOF, as io.ReaderAt
// requires.
func (o overlay) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("%w: negative offset %d", ErrInvalidArgument, off)
	}
	if off >= o.sh.size {
		return 0, io.EOF
	}
	n := len(p)
	var err error
	if int64(n) > o.sh.size-off {
		n = int(o.sh.size - off)
		err = io.EOF
	}
	if rerr := o.sh.read(o.root, o.sh.levels-1, 0, p[:n], off); rerr != nil {
		return 0, rerr
	}
	return n, err
}

// read fills p (device bytes from off) from the subtree n at level covering
// blocks from start; p lies within the subtree.
func (sh *overlayShape) read(n *node, level int, start uint64, p []byte, off int64) error {
	if len(p) == 0 {
		return nil
	}
	if n == nil {
		if sh.base == nil {
			clear(p)
			return nil
		}
		if _, err := sh.base.ReadAt(p, off); err != nil {
			if !errors.Is(err, io.EOF) {
				return fmt.Errorf("logwrites: reading base image at %d: %w", off, err)
			}
			return fmt.Errorf("logwrites: base image shorter than the device (%d bytes): %w", sh.size, io.ErrUnexpectedEOF)
		}
		return nil
	}
	if level == 0 {
		for len(p) > 0 {
			b := uint64(off) >> blockShift
			in := int(off & (blockSize - 1))
			var m int
			if bk := n.blks[b-start]; bk != nil {
				m = copy(p, bk.data[in:])
			} else {
				m = min(len(p), blockSize-in)
				if err := sh.read(nil, 0, 0, p[:m], off); err != nil {
					return err
				}
			}
			p, off = p[m:], off+int64(m)
		}
		return nil
	}
	child := span(level-1) << blockShift // bytes per child
	for len(p) > 0 {
		rel := uint64(off) - start<<blockShift
		j := rel / child
		end := int64(start<<blockShift + (j+1)*child)
		m := int(min(int64(len(p)), end-off))
		if err := sh.read(n.kids[j], level-1, start+j*(child>>blockShift), p[:m], off); err != nil {
			return err
		}
		p, off = p[m:], off+int64(m)
	}
	return nil
}

// blocks reports how many overlay blocks (non-base) the overlay holds; used
// by tests. Shared zero subtrees count in full.
func (o overlay) blocks() uint64 {
	var count func(n *node, level int) uint64
	count = func(n *node, level int) uint64 {
		if n == nil {
			return 0
		}
		var c uint64
		for j := range fanout {
			if level == 0 {
				if n.blks[j] != nil {
					c++
				}
			} else {
				c += count(n.kids[j], level-1)
			}
		}
		return c
	}
	return count(o.root, o.sh.levels-1)
}
