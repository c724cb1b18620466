package main

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/dmlog/dmlog/logwrites"
	"github.com/stretchr/testify/require"
)

// TestAppendUint compares appendUint with strconv at every power of ten
// and its neighbours, the largest value and random values of every length.
func TestAppendUint(t *testing.T) {
	check := func(v uint64) {
		if got, want := string(appendUint([]byte("x"), v)), "x"+strconv.FormatUint(v, 10); got != want {
			t.Fatalf("appendUint(%d) = %q, want %q", v, got, want)
		}
	}
	for _, p := range pow10 {
		for _, d := range []uint64{0, 1, 2} {
			check(p - d)
			check(p + d)
		}
	}
	check(math.MaxUint64)
	const seed = 1
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 0))
	for range 100000 {
		check(r.Uint64() >> r.IntN(64))
	}
}

// TestDecimal counts up across carries (9, 99, 999 and the largest
// values) and jumps back and forth, comparing with strconv each time.
func TestDecimal(t *testing.T) {
	var d decimal
	check := func(v uint64) {
		if got, want := string(d.next(v)), strconv.FormatUint(v, 10); got != want {
			t.Fatalf("decimal.next(%d) = %q, want %q", v, got, want)
		}
	}
	for v := range uint64(1200) {
		check(v)
	}
	for _, start := range []uint64{0, 8, 98, 99_999, 1e18 - 2, 1e19 - 3, math.MaxUint64 - 3} {
		for v := start; v-start < 5 && v >= start; v++ {
			check(v)
		}
	}
	check(math.MaxUint64) // then 0 is not MaxUint64+1 in digits
	check(0)
	check(1)
	check(7)
	check(3)
	check(4)
}

// TestLinesMatchFmt checks every line kind against the same line formatted
// with fmt, through writers whose buffers are smaller than a line (lines
// built apart), a few lines long (built in the buffer, or apart when it is
// nearly full) and large (built in place), with runs of repeated and
// changing tails.
func TestLinesMatchFmt(t *testing.T) {
	for _, size := range []int{64, 200, 4096} {
		t.Run(fmt.Sprintf("buffer=%d", size), func(t *testing.T) { linesMatchFmt(t, size) })
	}
}

func linesMatchFmt(t *testing.T, size int) {
	var got, want bytes.Buffer
	bw := bufio.NewWriterSize(&got, size)
	l := newLines(bw)
	const seed = 1
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 0))
	idx := uint64(0)
	for range 5000 {
		if r.IntN(10) == 0 {
			idx = r.Uint64() >> r.IntN(64)
		} else {
			idx++
		}
		block, sector := r.Uint64()>>r.IntN(64), r.Uint64()>>r.IntN(64)
		size := uint64(8 << r.IntN(3))
		f := logwrites.Flags(r.IntN(3))
		verb, label := "seek entry ", ""
		if r.IntN(2) == 0 {
			verb, label = "replaying ", "sector "
		}
		l.entry(verb, idx, block, label, sector, size, l.named(f))
		fmt.Fprintf(&want, "%s%d@%d: %s%d, size %d, flags 0x%x(%v)\n", verb, idx, block, label, sector, size, uint64(f), f)
	}
	require.NoError(t, bw.Flush())
	require.Equal(t, want.String(), got.String())
}
