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
	h    uint64
}

var (
	hashSeed = maphash.MakeSeed()
	zeroData [blockSize]byte
	zeroBlk  = &blk{data: &zeroData, h: maphash.Bytes(hashSeed, zeroData[:])}
)

// newBlks splits data (a multiple of blockSize long) into hashed blocks that
// share data's memory.
func newBlks(data []byte) []blk {
	bs := make([]blk, len(data)/blockSize)
	for i := range bs {
		d := (*[blockSize]byte)(data[i*blockSize:])
		bs[i] = blk{data: d, h: maphash.Bytes(hashSeed, d[:])}
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
	c.sum = n.sum
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

// ErrDeviceSize is returned when the device size is unknown or invalid, or a
// log entry lies beyond the end of the device.
var ErrDeviceSize = errors.New("logwrites: entry beyond the device or unknown device size")

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
				n.sum = n.sum.add(childSum(0, j, sum128{zeroBlk.h, ^zeroBlk.h}))
			} else {
				n.kids[j] = sh.zero[l-1]
				n.sum = n.sum.add(childSum(l, j, sh.zero[l-1].sum))
			}
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

// write returns a new overlay with blocks [b, b+len(src)) set to src (or to
// zero when src is nil and n blocks are given). o is not changed.
func (o overlay) write(b uint64, src []blk, n uint64) overlay {
	if src != nil {
		n = uint64(len(src))
	}
	if n == 0 {
		return o
	}
	root := o.sh.set(o.root, o.sh.levels-1, 0, b, b+n, src, b)
	return overlay{sh: o.sh, root: root}
}

// set returns a copy of n (a node at level covering blocks from start) with
// blocks [lo, hi) replaced by src[blockIndex-srcStart], or zero if src is nil.
func (sh *overlayShape) set(n *node, level int, start, lo, hi uint64, src []blk, srcStart uint64) *node {
	sp := span(level)
	if src == nil && lo <= start && start+sp <= hi {
		return sh.zero[level] // the whole subtree is discarded
	}
	c := n.clone(level)
	if level == 0 {
		for b := max(lo, start); b < min(hi, start+sp); b++ {
			j := int(b - start)
			if old := c.blks[j]; old != nil {
				c.sum = c.sum.sub(childSum(0, j, sum128{old.h, ^old.h}))
			}
			nb := zeroBlk
			if src != nil {
				nb = &src[b-srcStart]
			}
			c.blks[j] = nb
			c.sum = c.sum.add(childSum(0, j, sum128{nb.h, ^nb.h}))
		}
		return c
	}
	child := sp >> fanBits
	first := (max(lo, start) - start) / child
	last := (min(hi, start+sp) - 1 - start) / child
	for j := int(first); j <= int(last); j++ {
		old := c.kids[j]
		if old != nil {
			c.sum = c.sum.sub(childSum(level, j, old.sum))
		}
		nk := sh.set(old, level-1, start+uint64(j)*child, lo, hi, src, srcStart)
		c.kids[j] = nk
		c.sum = c.sum.add(childSum(level, j, nk.sum))
	}
	return c
}

// ReadAt reads the overlay's image: overlay blocks where present, the base
// elsewhere. Reads beyond the device size return io.EOF, as io.ReaderAt
// requires.
func (o overlay) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("logwrites: negative offset %d", off)
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
