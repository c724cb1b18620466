package logwrites

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// xov applies writes to an overlay and to a flat model at the same time.
type xov struct {
	t     *testing.T
	sh    *overlayShape
	ov    overlay
	model []byte
}

func newXov(t *testing.T, base []byte) *xov {
	sh, err := newShape(bytes.NewReader(base), int64(len(base)))
	require.NoError(t, err)
	return &xov{t: t, sh: sh, ov: overlay{sh: sh}, model: bytes.Clone(base)}
}

// put writes data (nil: discard n blocks) at block b.
func (x *xov) put(b uint64, data []byte, n uint64) {
	var blks []blk
	if data != nil {
		n = uint64(len(data) / blockSize)
		blks = newBlks(bytes.Clone(data))
		copy(x.model[b*blockSize:], data)
	} else {
		clear(x.model[b*blockSize : (b+n)*blockSize])
	}
	src, err := x.sh.newSrc(b, n, blks)
	require.NoError(x.t, err)
	x.ov = x.ov.write(src, b, b+n)
}

func (x *xov) check() {
	got := make([]byte, len(x.model))
	n, err := x.ov.ReadAt(got, 0)
	require.NoError(x.t, err)
	require.Equal(x.t, len(got), n)
	require.Equal(x.t, x.model, got)
}

func TestOverlayMatchesModel(t *testing.T) {
	const blocks = 4200 // three levels, the last subtrees partly beyond the device
	base := make([]byte, blocks*blockSize+300)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range base {
		if i%4096 < 2048 { // half the base is zero, half random
			base[i] = byte(r.Uint32())
		}
	}
	x := newXov(t, base)
	require.Equal(t, 3, x.sh.levels)
	var snaps []overlay
	var models [][]byte
	for i := range 300 {
		b := uint64(r.IntN(blocks - 200))
		if i%7 == 0 {
			b = uint64(r.IntN(64)) * 64 // subtree-aligned: whole leaves replaced
		}
		switch r.IntN(4) {
		case 0:
			x.put(b, nil, uint64(1+r.IntN(140))) // discard
		case 1:
			x.put(b, xdata(byte(i), 1+r.IntN(100)), 0)
		case 2: // rewrite what the base holds: no overlay block needed
			n := uint64(1 + r.IntN(8))
			x.put(b, bytes.Clone(base[b*blockSize:(b+n)*blockSize]), 0)
		default:
			x.put(b, xdata(byte(i), 1+r.IntN(3)), 0)
		}
		if i%50 == 0 {
			x.check()
			snaps = append(snaps, x.ov)
			models = append(models, bytes.Clone(x.model))
		}
	}
	x.check()
	// A big discard covering whole subtrees, over zero and non-zero base.
	x.put(0, nil, blocks)
	x.check()
	// Older overlays are unchanged by later writes (persistence).
	for i, s := range snaps {
		got := make([]byte, len(base))
		_, err := s.ReadAt(got, 0)
		require.NoError(t, err)
		require.Equal(t, models[i], got, "snapshot %d", i)
	}
	// Reads at odd offsets and lengths, and past the end.
	for range 200 {
		off := int64(r.IntN(len(base)))
		p := make([]byte, r.IntN(5000))
		n, err := x.ov.ReadAt(p, off)
		want := min(len(p), len(base)-int(off))
		require.Equal(t, want, n)
		if want < len(p) {
			require.ErrorIs(t, err, io.EOF)
		} else {
			require.NoError(t, err)
		}
		require.Equal(t, x.model[off:off+int64(n)], p[:n])
	}
	n, err := x.ov.ReadAt(make([]byte, 1), int64(len(base)))
	require.Zero(t, n)
	require.ErrorIs(t, err, io.EOF)
	_, err = x.ov.ReadAt(make([]byte, 1), -1)
	require.Error(t, err)
}

func TestOverlayCanonicalHash(t *testing.T) {
	base := make([]byte, 5000*blockSize)
	copy(base[100*blockSize:], xdata('b', 10))
	a, b := newXov(t, base), newXov(t, base)
	// Same image through different writes: a whole-device discard versus
	// zeroing only where the base is not zero; writes in different orders;
	// a write then its undoing.
	a.put(0, nil, 5000)
	b.put(100, make([]byte, 10*blockSize), 0)
	require.Equal(t, a.model, b.model)
	require.Equal(t, a.ov.hash(), b.ov.hash())

	a.put(7, xdata('x', 3), 0)
	a.put(8, xdata('y', 1), 0)
	b.put(8, xdata('q', 1), 0)
	b.put(7, xdata('x', 3), 0)
	b.put(8, xdata('y', 1), 0)
	require.Equal(t, a.model, b.model)
	require.Equal(t, a.ov.hash(), b.ov.hash())

	a.put(3000, xdata('z', 70), 0)
	a.put(3000, nil, 70)
	require.Equal(t, a.model, b.model)
	require.Equal(t, a.ov.hash(), b.ov.hash())
	require.Equal(t, b.ov.blocks(), a.ov.blocks())

	// Different images hash differently, also when the same blocks are
	// swapped between positions.
	c, d := newXov(t, base), newXov(t, base)
	c.put(1, xdata('1', 1), 0)
	c.put(2, xdata('2', 1), 0)
	d.put(1, xdata('2', 1), 0)
	d.put(2, xdata('1', 1), 0)
	require.NotEqual(t, c.ov.hash(), d.ov.hash())
	require.NotEqual(t, c.ov.hash(), overlay{sh: c.sh}.hash())

	// Rewriting the base's own content leaves the base image: no blocks.
	e := newXov(t, base)
	e.put(100, bytes.Clone(base[100*blockSize:110*blockSize]), 0)
	require.Nil(t, e.ov.root)
	require.Equal(t, overlay{sh: e.sh}.hash(), e.ov.hash())
}

func TestOverlaySmallAndNilBase(t *testing.T) {
	// One level; a device size that is not a multiple of 512.
	sh, err := newShape(nil, 1000)
	require.NoError(t, err)
	require.Equal(t, 1, sh.levels)
	src, err := sh.newSrc(1, 1, newBlks(xdata('a', 1)))
	require.NoError(t, err)
	ov := overlay{sh: sh}.write(src, 1, 2)
	p := make([]byte, 1000)
	n, err := ov.ReadAt(p, 0)
	require.NoError(t, err)
	require.Equal(t, 1000, n)
	require.Equal(t, make([]byte, 512), p[:512])
	require.Equal(t, xdata('a', 1)[:488], p[512:])

	_, err = newShape(nil, 0)
	require.ErrorIs(t, err, ErrDeviceSize)
}
