package main

import (
	"bufio"
	"io"
	"testing"

	"github.com/dmlog/dmlog/logwrites"
)

// BenchmarkProgressLine times one -vv line of --find (a "seek entry"
// line) built by progress into a buffered writer that discards: the
// per-entry cost that -vv adds to a find.
func BenchmarkProgressLine(b *testing.B) {
	bw := bufio.NewWriterSize(io.Discard, 64<<10)
	c := &config{verbose: 2, find: true}
	plan := progress(c, bw, 512, nil)
	e := logwrites.Entry{Index: 1234, Block: 567890, Sector: 123456, NrSectors: 8, Flags: logwrites.FlagFlush}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		e.Index = uint64(i)
		e.Block += 9
		plan(e, logwrites.Seeked)
	}
	bw.Flush()
}
