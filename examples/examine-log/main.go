// Command examine-log prints the header and dirty regions of a device-mapper
// disk log, as mdadm -X does for an md bitmap:
//
//	go run ./examples/examine-log FILE
//
// prints
//
//	magic: MiRr
//	version: 2
//	regions: <nr_regions>
//	clean: <count of clean regions>
//	dirty: <ranges of dirty regions, e.g. 0-3,17,40-41, or none>
//
// A file whose name ends in .gz is decompressed first, so the kernel
// captures in testdata/mirror can be examined as they are. A file that is
// not a disk log gets one line on stderr and exit status 1; a usage error
// (no FILE, a bad flag) exit status 2; -h prints the usage and exits 0.
package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/bits-and-blooms/bitset"

	"github.com/dmlog/dmlog/dirtylog"
	"github.com/dmlog/dmlog/internal/cli"
)

// parseArgs parses the command line and returns the file to examine. It
// returns flag.ErrHelp after printing the usage to stdout for -h, and a
// one-line error for a bad flag or a missing or extra argument.
func parseArgs(args []string, stdout io.Writer) (string, error) {
	fs := flag.NewFlagSet("examine-log", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if err := cli.Parse(fs, args, stdout, "usage: examine-log FILE\n\nPrint the header and dirty regions of a device-mapper disk log (FILE.gz is\ndecompressed first). Exit status: 0 done, 1 FILE is not a disk log, 2 usage.\n", ""); err != nil {
		return "", err
	}
	switch fs.NArg() {
	case 0:
		return "", errors.New("missing FILE (usage: examine-log FILE)")
	case 1:
		return fs.Arg(0), nil
	}
	return "", fmt.Errorf("one FILE expected, got %d arguments", fs.NArg())
}

func main() {
	path, err := parseArgs(os.Args[1:], os.Stdout)
	cli.ExitIfUsage("examine-log", err)
	if err := run(os.Stdout, path); err != nil {
		fmt.Fprintln(os.Stderr, "examine-log:", err)
		os.Exit(1)
	}
}

func run(w io.Writer, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	size := fi.Size()
	if !fi.Mode().IsRegular() { // a block device: ask for its size
		if size, err = f.Seek(0, io.SeekEnd); err != nil {
			return err
		}
	}
	var r io.ReaderAt = f
	if strings.HasSuffix(path, ".gz") {
		zr, err := gzip.NewReader(f)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		// A disk log is at most 1024 bytes plus 512 MiB of bitmap.
		b, err := io.ReadAll(io.LimitReader(zr, 1024+1<<29))
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		r, size = bytes.NewReader(b), int64(len(b))
	}
	img, err := dirtylog.ReadDiskImage(r, size)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	// The version is shown as stored; a v1 log is read as v2 by the kernel.
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "magic: MiRr\nversion: %d\nregions: %d\nclean: %d\ndirty: ",
		img.Header.Version, img.Header.NrRegions, img.Clean.Count())
	writeDirty(bw, img.Clean, img.Header.NrRegions)
	bw.WriteByte('\n')
	return bw.Flush()
}

// writeDirty writes the regions below n whose clean bit is clear as
// ascending ranges, "0-3,17,40-41", or "none". It walks the bitmap, so a
// log of 2^32 dirty regions costs no more memory than its bitmap.
func writeDirty(w *bufio.Writer, clean *bitset.BitSet, n uint64) {
	wrote := false
	for r := uint64(0); r < n; {
		lo, ok := clean.NextClear(uint(r))
		if !ok || uint64(lo) >= n {
			break
		}
		hi, ok := clean.NextSet(lo)
		if !ok || uint64(hi) > n {
			hi = uint(n)
		}
		if wrote {
			w.WriteByte(',')
		}
		wrote = true
		w.WriteString(strconv.FormatUint(uint64(lo), 10))
		if hi-1 > lo {
			w.WriteByte('-')
			w.WriteString(strconv.FormatUint(uint64(hi-1), 10))
		}
		r = uint64(hi)
	}
	if !wrote {
		w.WriteString("none")
	}
}
