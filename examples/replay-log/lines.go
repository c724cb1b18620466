package main

import (
	"bufio"
	"fmt"
	"math/bits"
	"os"
	"slices"
	"strconv"

	"github.com/dmlog/dmlog/logwrites"
)

// progress prints replay-log's -v / -vv lines, in its formats: entries
// skipped to reach --start-entry print the header's block and bare flags;
// entries walked to a start mark or in --find mode print the block after
// the header and named flags; replayed and (with -vv) filtered entries
// print their size in bytes. A discard ignored because of --no-discard is
// reported as replayed, as replay-log does.
func progress(c *config, stdout *bufio.Writer, s int, target *os.File) func(logwrites.Entry, logwrites.Action) {
	if c.verbose == 0 {
		return nil
	}
	zeroNote := false
	if target != nil {
		if fi, err := target.Stat(); err == nil && fi.Mode().IsRegular() {
			zeroNote = true
		}
	}
	l := newLines(stdout)
	return func(e logwrites.Entry, a logwrites.Action) {
		discard := e.Flags&logwrites.FlagDiscard != 0
		if a == logwrites.Skipped && discard && c.o.NoDiscard && inRange(c.o, e) {
			a = logwrites.Replayed
		}
		switch a {
		case logwrites.Replayed:
			l.entry("replaying ", e.Index, e.Block+1, "sector ", e.Sector, uint64(e.Length(s)), l.named(e.Flags))
			if discard && !c.o.NoDiscard && zeroNote {
				// replay-log tries BLKDISCARD first; on a regular file it
				// falls back to writing zeros and says so once.
				fmt.Fprintln(stdout, "replay device doesn't support discard, switching to writing zeros")
				zeroNote = false
			}
		case logwrites.Skipped:
			if c.verbose > 1 {
				l.entry("skipping ", e.Index, e.Block+1, "sector ", e.Sector, uint64(e.Length(s)), l.named(e.Flags))
			}
		case logwrites.Seeked, logwrites.Found:
			if c.verbose < 2 {
				return
			}
			if c.o.StartMark == "" && e.Index < c.o.StartEntry {
				l.entry("seek entry ", e.Index, e.Block, "", e.Sector, e.NrSectors, l.bare(e.Flags))
			} else {
				l.entry("seek entry ", e.Index, e.Block+1, "", e.Sector, e.NrSectors, l.named(e.Flags))
			}
		}
	}
}

// lines writes replay-log's per-entry lines ("<verb><index>@<block>:
// <label><sector>, size <size>, flags <flags>") straight into the buffered
// stdout, without fmt, so that -v/-vv cost little next to a find or a
// replay: the index is kept in decimal and counted up (it mostly grows by
// one from line to line), the tail ", size <size>, flags <flags>\n" is
// kept from the line before when size and flags repeat (runs of writes of
// one size), and only the block and the sector are formatted each time.
// Not safe for concurrent use.
type lines struct {
	out    *bufio.Writer
	line   []byte     // a line too long for out's free space
	names  [32]string // "0x..(NAMES)" of the flag values seen
	bare32 [32]string // "0x.." of the flag values seen
	index  decimal    // the last index written
	tail   struct {   // the last line's tail
		size  uint64
		flags string
		text  []byte
	}
}

func newLines(out *bufio.Writer) *lines { return &lines{out: out} }

// bare returns the flags as replay-log prints them while skipping to
// --start-entry: "0x<hex>".
func (l *lines) bare(f logwrites.Flags) string {
	if f < 32 && l.bare32[f] != "" {
		return l.bare32[f]
	}
	n := "0x" + strconv.FormatUint(uint64(f), 16)
	if f < 32 {
		l.bare32[f] = n
	}
	return n
}

// named returns replay-log's flags text: "0x<hex>(<NAMES>)".
func (l *lines) named(f logwrites.Flags) string {
	if f < 32 && l.names[f] != "" {
		return l.names[f]
	}
	n := fmt.Sprintf("0x%x(%v)", uint64(f), f)
	if f < 32 {
		l.names[f] = n
	}
	return n
}

// entry writes one line.
func (l *lines) entry(verb string, idx, block uint64, label string, sector, size uint64, flags string) {
	t := &l.tail
	if t.text == nil || size != t.size || flags != t.flags {
		t.size, t.flags = size, flags
		t.text = append(t.text[:0], ", size "...)
		t.text = strconv.AppendUint(t.text, size, 10)
		t.text = append(t.text, ", flags "...)
		t.text = append(t.text, flags...)
		t.text = append(t.text, '\n')
	}
	need := len(verb) + len(label) + 3*20 + len("@: ") + len(t.text)
	var b []byte
	if l.out.Available() >= need {
		b = l.out.AvailableBuffer() // built in place: Write then copies it onto itself
	} else {
		if cap(l.line) < need {
			l.line = make([]byte, 0, need)
		}
		b = l.line[:0]
	}
	b = append(b, verb...)
	b = append(b, l.index.next(idx)...)
	b = append(b, '@')
	b = appendUint(b, block)
	b = append(b, ": "...)
	b = append(b, label...)
	b = appendUint(b, sector)
	b = append(b, t.text...)
	l.out.Write(b)
}

// decimal is a number kept as its decimal digits, for a number that
// mostly grows by one from one use to the next: the next one is an
// increment of the last digits, not a formatting. The zero value is ready
// to use. Not safe for concurrent use.
type decimal struct {
	v     uint64
	valid bool
	d     [20]byte // right-aligned digits, '0'-padded on the left
	i     int      // d[i:] is v without leading zeros
}

// next returns the digits of v (valid until the next call).
func (x *decimal) next(v uint64) []byte {
	if x.valid && v == x.v+1 && v != 0 {
		x.v = v
		j := len(x.d) - 1
		for x.d[j] == '9' {
			x.d[j] = '0'
			j--
		}
		x.d[j]++
		x.i = min(x.i, j)
		return x.d[x.i:]
	}
	x.v, x.valid = v, true
	var t [20]byte
	digits := strconv.AppendUint(t[:0], v, 10)
	x.i = len(x.d) - len(digits)
	for j := range x.i {
		x.d[j] = '0'
	}
	copy(x.d[x.i:], digits)
	return x.d[x.i:]
}

// pairs holds the two digits of 00 to 99.
const pairs = "00010203040506070809" +
	"10111213141516171819" +
	"20212223242526272829" +
	"30313233343536373839" +
	"40414243444546474849" +
	"50515253545556575859" +
	"60616263646566676869" +
	"70717273747576777879" +
	"80818283848586878889" +
	"90919293949596979899"

// pow10[i] is 10^i.
var pow10 = [20]uint64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
	1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19}

// appendUint appends v in decimal, as strconv.AppendUint does, writing
// the digits in place (two at a time, from the last) rather than through
// a buffer.
func appendUint(b []byte, v uint64) []byte {
	t := bits.Len64(v) * 1233 >> 12 // about log10(v)
	n := t + 1
	if v < pow10[t] {
		n = max(t, 1)
	}
	l := len(b)
	b = slices.Grow(b, n)[:l+n]
	d := b[l:]
	i := n
	for v >= 100 {
		q := v / 100
		r := (v - q*100) * 2
		i -= 2
		d[i], d[i+1] = pairs[r], pairs[r+1]
		v = q
	}
	if v >= 10 {
		d[0], d[1] = pairs[2*v], pairs[2*v+1]
	} else {
		d[0] = byte('0' + v)
	}
	return b
}
