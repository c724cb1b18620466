// Command crashtest crash-tests a small Go key-value store without a kernel
// or root: it runs the store on a logwrites.Recorder over an in-memory
// device, then lets logwrites.Explore generate every device state a power
// cut could have left (prefixes at each flush, subsets and reorderings of
// the unflushed writes, torn writes) and checks that the store recovers
// every acknowledged record from each one.
//
//	go run ./examples/crashtest        # correct store: exits 0
//	go run ./examples/crashtest -bug   # one fsync skipped: prints the losing state, exits 1
//
// The store (kv.go) appends a checksummed record, syncs, then rewrites a
// checksummed commit block and syncs again. With -bug it skips the first
// sync, so the commit block and the record are in the same flush epoch and
// the device may persist the commit block without the record: a committed
// record is lost, and Explore reports the state in which that happens,
// together with a description that rebuilds it (logwrites.ReplayState).
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/dmlog/dmlog/internal/testdev"
	"github.com/dmlog/dmlog/logwrites"
)

const (
	devSize = 1 << 20
	logSize = 8 << 20
)

type config struct {
	puts      int
	bug       bool
	tear      bool
	seed      uint64
	maxSubset int
	parallel  int
}

func main() {
	var c config
	flag.IntVar(&c.puts, "puts", 20, "number of records to put")
	flag.BoolVar(&c.bug, "bug", false, "skip the fsync between a record and its commit block")
	flag.BoolVar(&c.tear, "tear", true, "also explore torn writes (512-byte granularity)")
	flag.Uint64Var(&c.seed, "seed", 1, "seed for the subsets, orders and tears explored")
	flag.IntVar(&c.maxSubset, "max-subset", 64, "subset states per epoch")
	flag.IntVar(&c.parallel, "parallel", 0, "checks run at once (0: GOMAXPROCS)")
	flag.Parse()
	err := run(c, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "crashtest:", err)
		os.Exit(1)
	}
}

// ackPrefix is the name of the mark logged after each acknowledged Put.
const ackPrefix = "ack-"

// record runs the workload on a Recorder and returns the log and the
// records put, in order.
func record(c config) (*logwrites.Log, []Record, error) {
	dev := testdev.NewMemory(devSize)
	logDev := testdev.NewMemory(logSize)
	rec, err := logwrites.New(dev, logDev, logwrites.Options{SectorSize: sector})
	if err != nil {
		return nil, nil, err
	}
	st := Create(rec)
	st.SkipDataSync = c.bug
	var puts []Record
	for i := range c.puts {
		r := Record{Key: fmt.Sprintf("key-%03d", i), Value: strings.Repeat(string(rune('a'+i%26)), 50+i*97%1500)}
		if err := st.Put(r); err != nil {
			return nil, nil, fmt.Errorf("put %d: %w", i, err)
		}
		puts = append(puts, r)
		// Put returned: the record is acknowledged. The mark tells the
		// checker how many records every later state must hold.
		if err := rec.Mark(ackPrefix + strconv.Itoa(i+1)); err != nil {
			return nil, nil, err
		}
	}
	if err := rec.Close(); err != nil {
		return nil, nil, err
	}
	l, err := logwrites.Open(logDev)
	return l, puts, err
}

// checker returns the crash-state check: the store must open, every
// committed record must be intact, the records must be the first ones put,
// and every record acknowledged before the cut must be there.
func checker(puts []Record) func(ctx context.Context, s logwrites.State) error {
	return func(ctx context.Context, s logwrites.State) error {
		return checkImage(s, s.Mark, puts)
	}
}

func checkImage(img io.ReaderAt, mark string, puts []Record) error {
	acked := 0
	switch {
	case mark == logwrites.EndMark:
		acked = len(puts)
	case strings.HasPrefix(mark, ackPrefix):
		acked, _ = strconv.Atoi(mark[len(ackPrefix):])
	}
	got, committed, err := Recover(img)
	if err != nil {
		if committed > 0 {
			return fmt.Errorf("committed record lost: the commit block says %d records, %d recovered (%d acknowledged before the cut): %w",
				committed, len(got), acked, err)
		}
		return fmt.Errorf("store does not open (%d records acknowledged before the cut): %w", acked, err)
	}
	if len(got) > len(puts) {
		return fmt.Errorf("%d records recovered, only %d were put", len(got), len(puts))
	}
	for i, r := range got {
		if r != puts[i] {
			return fmt.Errorf("record %d is %q, put %q", i+1, r.Key, puts[i].Key)
		}
	}
	if int(committed) < acked {
		return fmt.Errorf("%d records recovered, %d acknowledged", committed, acked)
	}
	return nil
}

func run(c config, out io.Writer) error {
	start := time.Now()
	l, puts, err := record(c)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "recorded %d puts in %d log entries (fsync between record and commit: %v)\n",
		len(puts), l.NumEntries(), !c.bug)
	base := bytes.NewReader(make([]byte, devSize)) // the device started all zeros
	o := logwrites.ExploreOptions{Seed: c.seed, Tear: c.tear, MaxSubsetStates: c.maxSubset, Parallel: c.parallel}
	stats, err := logwrites.Explore(context.Background(), l, base, o, checker(puts))
	var se *logwrites.StateError
	if errors.As(err, &se) {
		fmt.Fprintf(out, "LOST DATA in crash state after %d states checked:\n  %v\n  %v\n", stats.States, se.State.Description, se.Err)
		describeEntries(out, l, se.State.Description)
		// The description rebuilds the state exactly: show it.
		img := testdev.NewMemory(devSize)
		if rerr := logwrites.ReplayState(l, se.State.Description, img); rerr != nil {
			return fmt.Errorf("replaying the failing state: %w", rerr)
		}
		fmt.Fprintf(out, "  replayed with logwrites.ReplayState, the check fails again: %v\n",
			checkImage(img, se.State.Mark, puts))
		return fmt.Errorf("committed data lost in %v", se.State.Description)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "checked %d crash states (%d prefix, %d subset, %d torn; %d duplicates skipped) in %v: every state recovers every acknowledged record\n",
		stats.States, stats.Prefix, stats.Subset, stats.Torn, stats.Duplicates, time.Since(start).Round(time.Millisecond))
	return nil
}

// describeEntries prints the entries a subset state applied or dropped.
func describeEntries(out io.Writer, l *logwrites.Log, d logwrites.Description) {
	role := map[uint64]string{}
	for _, i := range d.Apply {
		role[i] = "applied"
	}
	if d.Tear != nil {
		role[d.Tear.Entry] = "torn"
	}
	for _, i := range d.Dropped {
		role[i] = "dropped"
	}
	for e, err := range l.Entries() {
		if err != nil || e.Index >= d.Cut {
			break
		}
		r, ok := role[e.Index]
		if !ok {
			continue
		}
		what := "record data"
		if e.Sector == 0 {
			what = "commit block"
		}
		fmt.Fprintf(out, "    entry %d (%s): write of %d sectors at sector %d, the %s\n", e.Index, r, e.NrSectors, e.Sector, what)
	}
}
