// Command workload is the file-system workload the end-to-end tests run
// inside a qemu guest, on ext4 over dmlog's NBD server. It is built static
// (CGO_ENABLED=0) and put in the guest's initramfs.
//
//	workload run -root /mnt/w -seed 1 [-bytes 24MiB]   # the seeded workload
//	workload list -root /mnt/w                          # the tree, with sha256
//
// run is deterministic for a seed: the same operations, names and contents
// every time. It creates files of varied sizes, overwrites, truncates,
// appends, renames and unlinks them, syncs the file system now and then,
// writes one large file with O_DIRECT, and makes some files durable with
// fsync of the file and of its directory (or the atomic-replace pattern:
// write a temporary file, fsync it, rename it into place, fsync the
// directory). Each durable file is reported on stdout, once its fsyncs
// returned, as
//
//	DMLOG durable PATH SIZE SHA256
//
// and is never touched again: after a power cut at any later point it must
// read back exactly so. Other files carry no promise.
//
// list walks the tree in lexical order and prints "DMLOG dir PATH" and
// "DMLOG file PATH SIZE SHA256" lines, then "DMLOG list done files=N";
// errors are "DMLOG error ..." lines and exit status 1. Paths are relative
// to -root.
package main

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	switch os.Args[1] {
	case "run":
		os.Exit(runCmd(os.Args[2:]))
	case "list":
		os.Exit(listCmd(os.Args[2:]))
	case "-h", "-help", "--help":
		usage()
		os.Exit(0)
	default:
		fmt.Fprintf(os.Stderr, "workload: unknown subcommand %q (want run or list)\n", os.Args[1])
		os.Exit(2)
	}
}

func usage() {
	fmt.Fprint(os.Stderr, `usage:
  workload run -root DIR -seed N [-bytes SIZE]   seeded file-system workload
  workload list -root DIR                        print the tree with sha256
`)
}

func runCmd(args []string) int {
	fl := flag.NewFlagSet("run", flag.ContinueOnError)
	root := fl.String("root", "", "directory to work in (created)")
	seed := fl.Uint64("seed", 1, "seed of the operations and contents")
	budget := fl.String("bytes", "24MiB", "bytes to write in all (KiB/MiB suffixes)")
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	n, err := parseSize(*budget)
	if err != nil || n <= 0 {
		fmt.Fprintf(os.Stderr, "workload: -bytes %q: want a positive size such as 24MiB\n", *budget)
		return 2
	}
	if *root == "" {
		fmt.Fprintln(os.Stderr, "workload: -root is required")
		return 2
	}
	w := newWorkload(*root, *seed, n, os.Stdout)
	if err := w.run(); err != nil {
		fmt.Printf("DMLOG error %v\n", err)
		return 1
	}
	fmt.Printf("DMLOG workload done ops=%d written=%d durable=%d live=%d\n", w.ops, w.written, w.durable, len(w.live))
	return 0
}

func newWorkload(root string, seed uint64, budget int64, out io.Writer) *workload {
	return &workload{root: root, rng: rand.New(rand.NewPCG(seed, 0x3c6ef372fe94f82b)), seed: seed, budget: budget, out: out}
}

func parseSize(s string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suf string
		m   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}} {
		if strings.HasSuffix(s, u.suf) {
			s, mult = strings.TrimSuffix(s, u.suf), u.m
			break
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, err
	}
	return v * mult, nil
}

// workload holds the model: which files exist (the live ones may still
// change; frozen ones were reported durable and are never touched).
type workload struct {
	root    string
	out     io.Writer // where durable lines go
	rng     *rand.Rand
	seed    uint64
	budget  int64
	written int64
	ops     int
	durable int
	nextID  int
	dirs    []string // relative to root
	live    []string // relative paths of files that may still change
	liveSz  int64    // bytes in live and frozen files (approximate)
	direct  bool     // the O_DIRECT file was written
}

const maxLiveBytes = 40 << 20 // keep the 128 MiB file system far from full

func (w *workload) path(rel string) string { return filepath.Join(w.root, rel) }

func (w *workload) run() error {
	if err := os.MkdirAll(w.root, 0o755); err != nil {
		return err
	}
	for i := range 4 {
		if err := w.mkdir(fmt.Sprintf("d%d", i)); err != nil {
			return err
		}
	}
	if err := fsyncDir(w.root); err != nil {
		return err
	}
	for w.written < w.budget {
		w.ops++
		if !w.direct && w.written >= w.budget/2 {
			if err := w.directFile(); err != nil {
				return fmt.Errorf("O_DIRECT file: %w", err)
			}
			continue
		}
		if w.liveSz > maxLiveBytes && len(w.live) > 0 {
			if err := w.unlink(); err != nil {
				return err
			}
			continue
		}
		var err error
		switch p := w.rng.IntN(100); {
		case p < 30 || len(w.live) == 0:
			err = w.create(w.rng.IntN(100) < 35)
		case p < 38:
			err = w.replaceDurable()
		case p < 50:
			err = w.overwrite()
		case p < 57:
			err = w.truncate()
		case p < 64:
			err = w.appendTo()
		case p < 74:
			err = w.rename()
		case p < 84:
			err = w.unlink()
		case p < 88:
			err = w.mkdir(w.newDirName())
		case p < 93:
			syscall.Sync()
		default:
			err = w.makeDurable()
		}
		if err != nil {
			return fmt.Errorf("op %d: %w", w.ops, err)
		}
	}
	syscall.Sync()
	return nil
}

func (w *workload) newDirName() string {
	parent := w.dirs[w.rng.IntN(len(w.dirs))]
	w.nextID++
	return filepath.Join(parent, fmt.Sprintf("s%d", w.nextID))
}

func (w *workload) mkdir(rel string) error {
	if err := os.Mkdir(w.path(rel), 0o755); err != nil {
		return err
	}
	w.dirs = append(w.dirs, rel)
	return nil
}

func (w *workload) newName(prefix string) string {
	w.nextID++
	return filepath.Join(w.dirs[w.rng.IntN(len(w.dirs))], fmt.Sprintf("%s%d", prefix, w.nextID))
}

// size draws a file size: empty, small, medium or large.
func (w *workload) size() int64 {
	switch p := w.rng.IntN(100); {
	case p < 5:
		return 0
	case p < 45:
		return 1 + w.rng.Int64N(8<<10)
	case p < 85:
		return 8<<10 + w.rng.Int64N(248<<10)
	default:
		return 256<<10 + w.rng.Int64N(1792<<10)
	}
}

// fill returns n deterministic bytes for this point of the workload.
func (w *workload) fill(n int64) []byte {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[0:], w.seed)
	binary.LittleEndian.PutUint64(key[8:], uint64(w.ops))
	binary.LittleEndian.PutUint64(key[16:], uint64(w.nextID))
	binary.LittleEndian.PutUint64(key[24:], uint64(n))
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(key).Read(b)
	return b
}

// writeFile writes data to a new file in chunks of random sizes.
func (w *workload) writeFile(rel string, data []byte, sync bool) error {
	f, err := os.OpenFile(w.path(rel), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	for off := 0; off < len(data); {
		n := min(len(data)-off, 4<<10+w.rng.IntN(252<<10))
		if _, err := f.Write(data[off : off+n]); err != nil {
			f.Close()
			return err
		}
		off += n
	}
	w.written += int64(len(data))
	w.liveSz += int64(len(data))
	if sync {
		return syncClose(f)
	}
	return f.Close()
}

func (w *workload) create(durable bool) error {
	rel := w.newName("f")
	if err := w.writeFile(rel, w.fill(w.size()), durable); err != nil {
		return err
	}
	if !durable {
		w.live = append(w.live, rel)
		return nil
	}
	if err := fsyncDir(filepath.Dir(w.path(rel))); err != nil {
		return err
	}
	return w.report(rel)
}

// replaceDurable is the atomic-replace pattern: temporary file, fsync,
// rename into place (over a live file sometimes), fsync the directory.
func (w *workload) replaceDurable() error {
	tmp := w.newName("t")
	if err := w.writeFile(tmp, w.fill(w.size()), true); err != nil {
		return err
	}
	dst := w.newName("r")
	if len(w.live) > 0 && w.rng.IntN(2) == 0 {
		i := w.rng.IntN(len(w.live))
		dst = w.live[i]
		w.live = slices.Delete(w.live, i, i+1)
	}
	if err := os.Rename(w.path(tmp), w.path(dst)); err != nil {
		return err
	}
	if err := fsyncDir(filepath.Dir(w.path(dst))); err != nil {
		return err
	}
	if filepath.Dir(tmp) != filepath.Dir(dst) {
		if err := fsyncDir(filepath.Dir(w.path(tmp))); err != nil {
			return err
		}
	}
	return w.report(dst)
}

func (w *workload) pick() (int, string) {
	i := w.rng.IntN(len(w.live))
	return i, w.live[i]
}

func (w *workload) overwrite() error {
	_, rel := w.pick()
	f, err := os.OpenFile(w.path(rel), os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	off := int64(0)
	if fi.Size() > 0 {
		off = w.rng.Int64N(fi.Size())
	}
	data := w.fill(1 + w.rng.Int64N(64<<10))
	if _, err := f.WriteAt(data, off); err != nil {
		return err
	}
	w.written += int64(len(data))
	if end := off + int64(len(data)); end > fi.Size() {
		w.liveSz += end - fi.Size()
	}
	return nil
}

func (w *workload) truncate() error {
	_, rel := w.pick()
	fi, err := os.Stat(w.path(rel))
	if err != nil {
		return err
	}
	n := w.rng.Int64N(fi.Size() + 1)
	if w.rng.IntN(3) == 0 {
		n = fi.Size() + w.rng.Int64N(128<<10) // grow: a hole
	}
	if err := os.Truncate(w.path(rel), n); err != nil {
		return err
	}
	w.liveSz += n - fi.Size()
	return nil
}

func (w *workload) appendTo() error {
	_, rel := w.pick()
	f, err := os.OpenFile(w.path(rel), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	data := w.fill(1 + w.rng.Int64N(32<<10))
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	w.written += int64(len(data))
	w.liveSz += int64(len(data))
	return f.Close()
}

func (w *workload) rename() error {
	i, rel := w.pick()
	dst := w.newName("m")
	if err := os.Rename(w.path(rel), w.path(dst)); err != nil {
		return err
	}
	w.live[i] = dst
	return nil
}

func (w *workload) unlink() error {
	i, rel := w.pick()
	fi, err := os.Stat(w.path(rel))
	if err != nil {
		return err
	}
	if err := os.Remove(w.path(rel)); err != nil {
		return err
	}
	w.liveSz -= fi.Size()
	w.live = slices.Delete(w.live, i, i+1)
	return nil
}

// makeDurable fsyncs a live file (after whatever overwrites, truncates and
// renames it went through) and its directory, and freezes it.
func (w *workload) makeDurable() error {
	i, rel := w.pick()
	f, err := os.OpenFile(w.path(rel), os.O_RDWR, 0)
	if err != nil {
		return err
	}
	if err := syncClose(f); err != nil {
		return err
	}
	if err := fsyncDir(filepath.Dir(w.path(rel))); err != nil {
		return err
	}
	w.live = slices.Delete(w.live, i, i+1)
	return w.report(rel)
}

// directFile writes a large file with O_DIRECT from page-aligned buffers,
// fsyncs it and its directory.
func (w *workload) directFile() error {
	w.direct = true
	// A quarter of the volume, 1 to 6 MiB, in whole chunks.
	const chunk = 1 << 20
	size := min(max(w.budget/4, chunk), 6<<20) &^ (chunk - 1)
	rel := w.newName("direct")
	f, err := os.OpenFile(w.path(rel), os.O_CREATE|os.O_EXCL|os.O_WRONLY|syscall.O_DIRECT, 0o644)
	if err != nil {
		return err
	}
	buf, err := syscall.Mmap(-1, 0, chunk, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		f.Close()
		return err
	}
	defer syscall.Munmap(buf)
	for off := int64(0); off < size; off += chunk {
		copy(buf, w.fill(chunk))
		if _, err := f.WriteAt(buf, off); err != nil {
			f.Close()
			return err
		}
	}
	w.written += size
	w.liveSz += size
	if err := syncClose(f); err != nil {
		return err
	}
	if err := fsyncDir(filepath.Dir(w.path(rel))); err != nil {
		return err
	}
	return w.report(rel)
}

// report prints the durable line for rel, hashing what the file holds.
func (w *workload) report(rel string) error {
	size, sum, err := hashFile(w.path(rel))
	if err != nil {
		return err
	}
	w.durable++
	fmt.Fprintf(w.out, "DMLOG durable %s %d %s\n", rel, size, sum)
	return nil
}

// syncClose fsyncs f and closes it (closing it on a failed fsync too).
func syncClose(f *os.File) error {
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("fsync %s: %w", f.Name(), err)
	}
	return f.Close()
}

func fsyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return syncClose(d)
}

func hashFile(p string) (int64, string, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return 0, "", fmt.Errorf("reading %s: %w", p, err)
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

func listCmd(args []string) int {
	fl := flag.NewFlagSet("list", flag.ContinueOnError)
	root := fl.String("root", "", "directory to list")
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *root == "" {
		fmt.Fprintln(os.Stderr, "workload: -root is required")
		return 2
	}
	if !listTree(*root, os.Stdout) {
		return 1
	}
	return 0
}

// listTree prints the tree under root; it reports whether it read
// everything without an error.
func listTree(root string, out io.Writer) bool {
	files, bad := 0, false
	if _, err := os.Lstat(root); errors.Is(err, fs.ErrNotExist) {
		// A power cut before the workload made its directory.
		fmt.Fprintf(out, "DMLOG list done files=0 (no %s)\n", root)
		return true
	}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		rel, _ := filepath.Rel(root, p)
		if err != nil {
			fmt.Fprintf(out, "DMLOG error %s: %v\n", rel, err)
			bad = true
			return nil
		}
		switch {
		case d.IsDir():
			fmt.Fprintf(out, "DMLOG dir %s\n", rel)
		case d.Type().IsRegular():
			size, sum, err := hashFile(p)
			if err != nil {
				fmt.Fprintf(out, "DMLOG error %s: %v\n", rel, err)
				bad = true
				return nil
			}
			files++
			fmt.Fprintf(out, "DMLOG file %s %d %s\n", rel, size, sum)
		default:
			fmt.Fprintf(out, "DMLOG other %s %v\n", rel, d.Type())
		}
		return nil
	})
	if err != nil {
		fmt.Fprintf(out, "DMLOG error walk: %v\n", err)
		bad = true
	}
	fmt.Fprintf(out, "DMLOG list done files=%d\n", files)
	return !bad
}
