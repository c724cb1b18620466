package logwrites

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// xlog builds a log image entry by entry, for exploration tests (sector
// size 512 unless set).
type xlog struct {
	s    int
	n    uint64
	body []byte
}

func newXlog(s int) *xlog { return &xlog{s: s} }

func (x *xlog) entry(sector uint64, flags Flags, data []byte, nr uint64, mark string) *xlog {
	h := make([]byte, x.s)
	if data != nil {
		nr = uint64(len(data) / x.s)
	}
	putHeader(h, sector, nr, flags, mark)
	x.body = append(x.body, h...)
	x.body = append(x.body, data...)
	x.n++
	return x
}

// w logs a write of data at sector with flags.
func (x *xlog) w(sector uint64, flags Flags, data []byte) *xlog {
	return x.entry(sector, flags, data, 0, "")
}
func (x *xlog) discard(sector, nr uint64) *xlog { return x.entry(sector, FlagDiscard, nil, nr, "") }
func (x *xlog) flush() *xlog                    { return x.entry(0, FlagFlush, nil, 0, "") }
func (x *xlog) mark(name string) *xlog          { return x.entry(0, FlagMark, nil, 0, name) }

func (x *xlog) image() []byte {
	super := make([]byte, x.s)
	putSuper(super, x.n, x.s)
	return append(super, x.body...)
}

func (x *xlog) open(t testing.TB) *Log {
	t.Helper()
	l, err := Open(bytes.NewReader(x.image()))
	require.NoError(t, err)
	return l
}

// xdata returns n sectors of 512 bytes, each sector tagged with tag and
// its number so that every sector's content is distinct.
func xdata(tag byte, sectors int) []byte {
	b := make([]byte, sectors*512)
	for i := range sectors {
		for j := range 512 {
			b[i*512+j] = tag + byte(i*7+j%5)
		}
		b[i*512] = tag
		b[i*512+1] = byte(i)
	}
	return b
}

// xrandomLog is a random log over a device of devSectors sectors: plain
// writes (often overlapping), discards, FUA writes, flushes (some with data,
// some FLUSH|FUA) and marks, n entries.
func xrandomLog(seed uint64, n, devSectors int) *xlog {
	r := rand.New(rand.NewPCG(seed, 99))
	x := newXlog(512)
	for i := range n {
		sec := uint64(r.IntN(devSectors - 8))
		ln := 1 + r.IntN(8)
		switch k := r.IntN(20); {
		case k < 11:
			x.w(sec, 0, xdata(byte(i), ln))
		case k < 13:
			x.discard(sec, uint64(ln))
		case k < 15:
			x.w(sec, FlagFUA, xdata(byte(i), ln))
		case k < 17:
			x.flush()
		case k < 18:
			x.w(sec, FlagFlush, xdata(byte(i), ln))
		case k < 19:
			x.w(sec, FlagFlush|FlagFUA, xdata(byte(i), ln))
		default:
			x.mark("m" + string(rune('a'+i%26)))
		}
	}
	return x
}

// xreplayFrom replays the log's entries [0, limit) onto a copy of base with
// Replay.
func xreplayFrom(t testing.TB, l *Log, base []byte, limit uint64) []byte {
	t.Helper()
	dev := &memDev{b: bytes.Clone(base)}
	if limit == 0 {
		return dev.b
	}
	require.NoError(t, Replay(l, dev, ReplayOptions{Limit: limit}))
	return dev.b
}
