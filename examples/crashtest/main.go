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
// A bad flag exits 2 with one line; -h prints the usage and exits 0.
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
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dmlog/dmlog/dirtylog/testdev"
	"github.com/dmlog/dmlog/internal/cli"
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

// parseArgs parses the command line. It returns flag.ErrHelp after
// printing the usage to stdout for -h, and a one-line error for a bad
// flag or value.
func parseArgs(args []string, stdout io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("crashtest", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.IntVar(&c.puts, "puts", 20, "number of records to put (1 to 1000)")
	fs.BoolVar(&c.bug, "bug", false, "skip the fsync between a record and its commit block")
	fs.BoolVar(&c.tear, "tear", true, "also explore torn writes (512-byte granularity)")
	fs.Uint64Var(&c.seed, "seed", 1, "seed for the subsets, orders and tears explored")
	fs.IntVar(&c.maxSubset, "max-subset", 64, "subset states per epoch (negative: prefixes only)")
	fs.IntVar(&c.parallel, "parallel", 0, "checks run at once (0: GOMAXPROCS)")
	if err := cli.Parse(fs, args, stdout, "usage: crashtest [flags]\n\nCrash-test a small key-value store on a logwrites.Recorder: exit 0 if every\ncrash state recovers every acknowledged record, 1 if one loses data.\n\n", ""); err != nil {
		return c, err
	}
	switch {
	case fs.NArg() > 0:
		return c, fmt.Errorf("unexpected argument %q (crashtest takes flags only)", fs.Arg(0))
	case c.puts < 1 || c.puts > maxPuts:
		return c, fmt.Errorf("-puts %d: want 1 to %d records", c.puts, maxPuts)
	case c.parallel < 0:
		return c, fmt.Errorf("-parallel %d: want 0 (GOMAXPROCS) or more", c.parallel)
	}
	return c, nil
}

// maxPuts keeps the records well within the 1 MiB device (about 980 fit).
const maxPuts = 500

func main() {
	c, err := parseArgs(os.Args[1:], os.Stdout)
	cli.ExitIfUsage("crashtest", err)
	if err := run(c, os.Stdout); err != nil {
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
// and every record acknowledged before the cut must be there. A failing
// state that had no Put acknowledged yet is a bug too, but the one worth
// showing loses data a caller was told is safe: such states stop the
// exploration at once, the others are kept in early (lowest state ID
// first) and reported only if no state loses an acknowledged record.
func checker(puts []Record, early *earlyFailure) func(ctx context.Context, s logwrites.State) error {
	return func(ctx context.Context, s logwrites.State) error {
		err := checkImage(s, s.Mark, puts)
		if err == nil || ackedAt(s.Mark, puts) > 0 {
			return err
		}
		early.note(s.Description, s.Mark, err)
		return nil
	}
}

// earlyFailure keeps the failing state with the lowest ID among those
// that happened before any Put was acknowledged.
type earlyFailure struct {
	mu    sync.Mutex
	found bool
	desc  logwrites.Description
	mark  string
	err   error
}

func (e *earlyFailure) note(d logwrites.Description, mark string, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.found && e.desc.ID <= d.ID {
		return
	}
	d.Apply, d.Dropped = slices.Clone(d.Apply), slices.Clone(d.Dropped)
	if d.Tear != nil {
		t := *d.Tear
		d.Tear = &t
	}
	e.found, e.desc, e.mark, e.err = true, d, mark, err
}

// ackedAt is how many Puts were acknowledged before the cut of a state
// whose last mark is mark.
func ackedAt(mark string, puts []Record) int {
	switch {
	case mark == logwrites.EndMark:
		return len(puts)
	case strings.HasPrefix(mark, ackPrefix):
		n, _ := strconv.Atoi(mark[len(ackPrefix):])
		return n
	}
	return 0
}

func checkImage(img io.ReaderAt, mark string, puts []Record) error {
	acked := ackedAt(mark, puts)
	got, committed, err := Recover(img)
	if err != nil {
		if committed > 0 {
			return fmt.Errorf("committed record lost: the commit block says %d records, %d are intact, so the store does not open and the %d records acknowledged before the cut are unreadable: %w",
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
	var early earlyFailure
	stats, err := logwrites.Explore(context.Background(), l, base, o, checker(puts, &early))
	var se *logwrites.StateError
	switch {
	case errors.As(err, &se):
		fmt.Fprintf(out, "LOST DATA in crash state after %d states checked (%d records acknowledged before the cut):\n  %v\n  %v\n",
			stats.States, ackedAt(se.State.Mark, puts), se.State.Description, se.Err)
		return showFailure(out, l, se.State.Description, se.State.Mark, puts)
	case err != nil:
		return err
	case early.found:
		fmt.Fprintf(out, "CORRUPT STORE in crash state (checked %d states; none lost an acknowledged record, but this one, before any Put returned, does not open):\n  %v\n  %v\n",
			stats.States, early.desc, early.err)
		return showFailure(out, l, early.desc, early.mark, puts)
	}
	fmt.Fprintf(out, "checked %d crash states (%d prefix, %d subset, %d torn; %d duplicates skipped) in %v: every state recovers every acknowledged record\n",
		stats.States, stats.Prefix, stats.Subset, stats.Torn, stats.Duplicates, time.Since(start).Round(time.Millisecond))
	return nil
}

// showFailure prints the entries of a failing state, rebuilds it from its
// description alone (logwrites.ReplayState) and checks it again, and
// returns the error that makes the run fail.
func showFailure(out io.Writer, l *logwrites.Log, d logwrites.Description, mark string, puts []Record) error {
	describeEntries(out, l, d)
	img := testdev.NewMemory(devSize)
	if err := logwrites.ReplayState(l, d, img); err != nil {
		return fmt.Errorf("replaying the failing state: %w", err)
	}
	fmt.Fprintf(out, "  replayed with logwrites.ReplayState, the check fails again: %v\n", checkImage(img, mark, puts))
	return fmt.Errorf("committed data lost in %v", d)
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
