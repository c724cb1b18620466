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
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

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
	fmt.Fprintf(w, "magic: MiRr\nversion: %d\nregions: %d\nclean: %d\ndirty: %s\n",
		img.Header.Version, img.Header.NrRegions, img.Clean.Count(), ranges(img.Dirty()))
	return nil
}

// ranges formats ascending regions as "0-3,17,40-41", or "none".
func ranges(rs []dirtylog.Region) string {
	if len(rs) == 0 {
		return "none"
	}
	var b strings.Builder
	for i := 0; i < len(rs); {
		j := i
		for j+1 < len(rs) && rs[j+1] == rs[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatUint(uint64(rs[i]), 10))
		if j > i {
			b.WriteByte('-')
			b.WriteString(strconv.FormatUint(uint64(rs[j]), 10))
		}
		i = j + 1
	}
	return b.String()
}
