package logwrites

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

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
func xrandomLog(seed uint64, n, devSectors int) *handLog {
	r := rand.New(rand.NewPCG(seed, 99))
	x := newHandLog(512)
	for i := range n {
		sec := uint64(r.IntN(devSectors - 8))
		ln := 1 + r.IntN(8)
		switch k := r.IntN(20); {
		case k < 11:
			x.write(sec, 0, xdata(byte(i), ln))
		case k < 13:
			x.discard(sec, uint64(ln))
		case k < 15:
			x.write(sec, FlagFUA, xdata(byte(i), ln))
		case k < 17:
			x.flush(FlagFlush)
		case k < 18:
			x.write(sec, FlagFlush, xdata(byte(i), ln))
		case k < 19:
			x.write(sec, FlagFlush|FlagFUA, xdata(byte(i), ln))
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
