// Command replay-log replays a dm-log-writes log onto a device or file. It
// is a drop-in replacement for fstests' src/log-writes/replay-log, built on
// package logwrites: same options (long options may be abbreviated, as with
// getopt_long), same output and exit codes, except for replay-log's known
// pitfalls, which are fixed:
//
//   - --end-mark naming a mark that is not in the log exits 1 without
//     writing anything (replay-log replays the whole log and exits 0);
//   - a discard always zeroes its range on the target, whatever its size
//     (replay-log skips zeroing above 128 MiB when the target cannot discard);
//   - --start-sector/--end-sector filter discards too;
//   - a --fsck command killed by a signal, or exiting with a status that
//     is a multiple of 256, counts as a failure;
//   - an empty log (nr_entries 0) is not an error for the info print,
//     --num-entries or a replay;
//   - --check also accepts "discard" (as newer replay-log does);
//   - -h / --help prints the usage on stdout and exits 0 (other usage
//     errors keep replay-log's exit code 1);
//   - a --replay target that is a regular file smaller than the log's
//     device (the end of the furthest write or discard in the log) is
//     refused, exit 1, rather than silently grown; --grow allows it.
//
// Output is buffered (flushed at exit, before anything is written to
// stderr and before a --fsck command runs), so -v/-vv cost no write(2)
// per line. A replay without --fsck, with or without -v, is
// last-writer-wins (see logwrites.Replay): only what survives is copied;
// -v/-vv print the same lines, from the pass over the headers.
//
// Usage:
//
//	replay-log --log <logfile> [options]
//
// See -h (or any invalid option) for the option list.
package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"strconv"

	"github.com/dmlog/dmlog/logwrites"
)

var table = []longOpt{
	{"next-flush", false, 0},
	{"next-fua", false, 0},
	{"start-entry", true, 0},
	{"end-mark", true, 0},
	{"log", true, 0},
	{"replay", true, 0},
	{"limit", true, 0},
	{"verbose", false, 'v'},
	{"find", false, 0},
	{"num-entries", false, 0},
	{"no-discard", false, 0},
	{"fsck", true, 0},
	{"check", true, 0},
	{"start-mark", true, 0},
	{"start-sector", true, 0},
	{"end-sector", true, 0},
	{"grow", false, 0},
	{"help", false, 'h'},
}

const usageText = `Usage: replay-log --log <logfile> [options]
	--replay <device> - replay onto a specific device
	--limit <number> - number of entries to replay
	--next-flush - replay to/find the next flush
	--next-fua - replay to/find the next fua
	--start-entry <entry> - start at the given entry #
	--start-mark <mark> - mark to start from
	--end-mark <mark> - replay to/find the given mark
	--find - put replay-log in find mode, will search based on the other options
	--num-entries - print the number of entries in the log
	--no-discard - don't process discard entries
	--fsck - the fsck command to run, must specify --check
	--check [<number>|flush|fua|discard] when to check the file system, must specify --fsck
	--start-sector <sector> - replay ops on region from <sector> onto <device>
	--end-sector <sector> - replay ops on region to <sector> onto <device>
	-v or --verbose - print replayed ops
	-vv - print also skipped ops
	--grow - let a --replay file smaller than the log's device grow
	-h or --help - print this help and exit
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// config is the parsed command line.
type config struct {
	log, replay, fsck string
	o                 logwrites.ReplayOptions
	find, numEntries  bool
	verbose           int
	checkSet          bool
	grow, help        bool
}

// parseNumber parses like strtoull(s, &end, 0): decimal, 0x hex or 0 octal.
func parseNumber(s string) (uint64, error) {
	return strconv.ParseUint(s, 0, 64)
}

func usage(stderr io.Writer) int {
	fmt.Fprint(stderr, usageText)
	return 1
}

func parse(args []string, stderr io.Writer) (*config, int) {
	opts, _, err := getoptLong(args, "vh", table)
	if err != nil {
		fmt.Fprintf(stderr, "replay-log: %v\n", err)
		return nil, usage(stderr)
	}
	c := &config{}
	for _, op := range opts {
		var err error
		var n uint64
		switch op.name {
		case "v", "verbose":
			c.verbose++
		case "h", "help":
			c.help = true
		case "grow":
			c.grow = true
		case "next-flush":
			c.o.NextFlush = true
		case "next-fua":
			c.o.NextFUA = true
		case "start-entry":
			if c.o.StartEntry, err = parseNumber(op.arg); err != nil {
				fmt.Fprintln(stderr, "Invalid entry number")
				return nil, 1
			}
		case "end-mark":
			c.o.EndMark = op.arg
		case "start-mark":
			c.o.StartMark = op.arg
		case "log":
			c.log = op.arg
		case "replay":
			c.replay = op.arg
		case "limit":
			if c.o.Limit, err = parseNumber(op.arg); err != nil {
				fmt.Fprintln(stderr, "Invalid entry number")
				return nil, 1
			}
		case "find":
			c.find = true
		case "num-entries":
			c.numEntries = true
		case "no-discard":
			c.o.NoDiscard = true
		case "fsck":
			c.fsck = op.arg
		case "check":
			c.checkSet = true
			c.o.CheckEvery, c.o.CheckOn = 0, 0
			switch op.arg {
			case "flush":
				c.o.CheckOn = logwrites.FlagFlush
			case "fua":
				c.o.CheckOn = logwrites.FlagFUA
			case "discard":
				c.o.CheckOn = logwrites.FlagDiscard
			default:
				if n, err = parseNumber(op.arg); err != nil || n == 0 {
					fmt.Fprintln(stderr, "Invalid entry number")
					return nil, 1
				}
				c.o.CheckEvery = n
			}
		case "start-sector":
			if c.o.StartSector, err = parseNumber(op.arg); err != nil {
				fmt.Fprintln(stderr, "Invalid sector number")
				return nil, 1
			}
		case "end-sector":
			if n, err = parseNumber(op.arg); err != nil {
				fmt.Fprintln(stderr, "Invalid sector number")
				return nil, 1
			}
			c.o.EndSector = 0 // no bound
			if n != math.MaxUint64 {
				c.o.EndSector = n + 1
			}
		}
	}
	if c.help {
		return c, 0
	}
	if c.log == "" {
		return nil, usage(stderr)
	}
	return c, 0
}

// flushFirst is stderr behind buffered stdout: whatever is written to it
// comes after everything printed to stdout before.
type flushFirst struct {
	out *bufio.Writer
	w   io.Writer
}

func (f flushFirst) Write(p []byte) (int, error) {
	f.out.Flush()
	return f.w.Write(p)
}

func run(args []string, rawStdout, rawStderr io.Writer) int {
	stdout := bufio.NewWriterSize(rawStdout, 64<<10)
	defer stdout.Flush()
	stderr := flushFirst{stdout, rawStderr}
	c, code := parse(args, stderr)
	if c == nil {
		return code
	}
	if c.help {
		fmt.Fprint(stdout, usageText)
		return 0
	}
	lf, err := os.Open(c.log)
	if err != nil {
		fmt.Fprintf(stderr, "Couldn't open log %s: %v\n", c.log, err)
		return 1
	}
	defer lf.Close()
	var target *os.File
	if c.replay != "" {
		// O_WRONLY and never created, as replay-log does.
		target, err = os.OpenFile(c.replay, os.O_WRONLY, 0)
		if err != nil {
			fmt.Fprintf(stderr, "Couldn't open replay file %s: %v\n", c.replay, err)
			return 1
		}
		defer target.Close()
	}
	log, err := logwrites.Open(lf)
	if err != nil {
		fmt.Fprintln(stderr, describe(err))
		return 1
	}
	// Seek: replay-log checks the start point before anything else.
	if c.o.StartMark == "" && c.o.StartEntry > 0 && c.o.StartEntry >= log.NumEntries() {
		fmt.Fprintln(stderr, "Invalid entry number")
		return 1
	}
	if c.o.StartMark != "" {
		if _, err := logwrites.Find(log, logwrites.ReplayOptions{EndMark: c.o.StartMark}); err != nil {
			if errors.Is(err, logwrites.ErrNotFound) {
				fmt.Fprintln(stderr, "Couldn't find starting mark")
			} else {
				fmt.Fprintln(stderr, describe(err))
			}
			return 1
		}
	}
	if (c.fsck != "") != c.checkSet {
		return usage(stderr)
	}
	if target != nil && !c.grow && !c.find && !c.numEntries {
		if msg := tooSmall(log, target, c.replay); msg != "" {
			fmt.Fprintln(stderr, msg)
			return 1
		}
	}
	// -v/-vv lines only report what is replayed: Plan keeps the replay
	// last-writer-wins (with --fsck it is sequential, and a line comes once
	// its entry is on the target, before the check).
	c.o.Plan = progress(c, stdout, log.SectorSize(), target)
	if c.find {
		e, err := logwrites.Find(log, c.o)
		switch {
		case err == nil:
			fmt.Fprintf(stdout, "%d@%d\n", e.Index, e.NextBlock())
			return 0
		case errors.Is(err, logwrites.ErrNotFound):
			fmt.Fprintln(stderr, "Couldn't find entry")
			return 1
		default:
			fmt.Fprintln(stderr, describe(err))
			return 255
		}
	}
	if c.numEntries {
		fmt.Fprintf(stdout, "%d\n", log.NumEntries())
		return 0
	}
	if target == nil {
		fmt.Fprintf(stdout, "Log version=%d, sectorsize=%d, entries=%d\n", log.Version(), log.SectorSize(), log.NumEntries())
		return 0
	}
	if c.fsck != "" {
		c.o.Checker = func(e logwrites.Entry) error {
			stdout.Flush()
			return runCheck(c.fsck, rawStdout, rawStderr)
		}
	}
	if err := logwrites.Replay(log, target, c.o); err != nil {
		var re *logwrites.ReplayError
		switch {
		case errors.As(err, &re) && errors.Is(err, logwrites.ErrCheck):
			fmt.Fprintf(stderr, "Fsck errored out on entry %d\n", re.Entry.Index)
		case errors.Is(err, logwrites.ErrMarkNotFound):
			fmt.Fprintf(stderr, "Couldn't find end mark %q: nothing replayed\n", c.o.EndMark)
		default:
			fmt.Fprintln(stderr, describe(err))
		}
		return 1
	}
	return 0
}

// tooSmall returns why target (a regular file) cannot take the replay
// without growing: it is shorter than the end of the furthest write or
// discard in the log. A block device cannot grow (a write beyond its end
// fails); a log that cannot be read that far is left for the replay to
// report.
func tooSmall(log *logwrites.Log, target *os.File, name string) string {
	fi, err := target.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return ""
	}
	s := log.SectorSize()
	var end int64
	var furthest logwrites.Entry
	for e, err := range log.Entries() {
		if err != nil {
			break
		}
		if e.Flags&logwrites.FlagMark == 0 && e.NrSectors > 0 && e.Offset(s)+e.Length(s) > end {
			end, furthest = e.Offset(s)+e.Length(s), e
		}
	}
	if end <= fi.Size() {
		return ""
	}
	return fmt.Sprintf("Replay target %s is %d bytes, smaller than the log's device: entry %d ends at byte %d; nothing replayed (--grow lets the file grow)",
		name, fi.Size(), furthest.Index, end)
}

// runCheck runs the checker command through the shell, as system() does. A
// non-zero exit status or death by a signal is a failure.
func runCheck(cmd string, stdout, stderr io.Writer) error {
	c := exec.Command("/bin/sh", "-c", cmd)
	c.Stdin = os.Stdin
	c.Stdout, c.Stderr = stdout, stderr
	return c.Run()
}

// inRange reports whether e overlaps the --start-sector/--end-sector range.
func inRange(o logwrites.ReplayOptions, e logwrites.Entry) bool {
	if e.NrSectors == 0 {
		return true
	}
	return e.Sector+e.NrSectors > o.StartSector && (o.EndSector == 0 || e.Sector < o.EndSector)
}

// describe turns an error into replay-log's message where there is one.
func describe(err error) string {
	var ee *logwrites.EntryError
	switch {
	case errors.Is(err, logwrites.ErrBadMagic):
		return "Magic doesn't match"
	case errors.Is(err, logwrites.ErrBadVersion):
		return fmt.Sprintf("Version mismatch: %v", err)
	case errors.Is(err, logwrites.ErrMalformed) && errors.As(err, &ee):
		return fmt.Sprintf("Malformed entry @%d: %v", ee.Block, err)
	case errors.Is(err, logwrites.ErrTruncated):
		return fmt.Sprintf("Error reading entry: %v", err)
	}
	return err.Error()
}
