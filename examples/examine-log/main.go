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
// not a disk log gets one line on stderr and exit status 1.
package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/bits-and-blooms/bitset"

	"github.com/dmlog/dmlog/dirtylog"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: examine-log FILE")
		os.Exit(2)
	}
	if err := run(os.Stdout, os.Args[1]); err != nil {
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
