// Command mirror is dmlog's main demo: a RAID1 mirror over two file-backed
// legs with a disk log, crashed for real and recovered, showing what the log
// is for: only the regions being written when the crash landed are resynced.
//
//	go run ./examples/mirror [-dir DIR] [-size 64MiB] [-region 512KiB] [-writers 8] [-hot 4] [-run 400ms] [-rate 0]
//
// Sizes take a binary suffix (KiB, MiB, GiB); a bare number is bytes.
//
// It creates two leg files and a log file (in a new temporary directory, or
// in DIR, which must not already hold them), starts a child process that
// first writes every region of the mirror once and waits until the disk log
// has cleared them all, then keeps a few hot regions busy with concurrent
// writers, and kills it with SIGKILL in mid-flight. It then reopens the
// mirror, shows which regions the disk log marks dirty (and which of them
// the legs really disagree on), resyncs them with a progress bar — "resynced
// K of N regions" — verifies that the legs are identical and prints the
// kernel-style status and table lines.
//
// Exit status: 0 on success, 1 on any mismatch or error, 2 for a bad flag
// (-h prints the usage and exits 0). SIGINT or SIGTERM kills the child and
// removes the temporary directory the demo made.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dmlog/dmlog/dirtylog"
	"github.com/dmlog/dmlog/internal/cli"
	"github.com/dmlog/dmlog/internal/units"
	"github.com/dmlog/dmlog/mirror"
)

// childEnv marks the re-executed workload process.
const childEnv = "DMLOG_MIRROR_DEMO_CHILD"

const (
	leg0, leg1, logName = "leg0.img", "leg1.img", "log.img"
)

// config is the demo's flags.
type config struct {
	dir                string
	size, region, rate int64
	writers, hot       int
	run                time.Duration
}

// parseArgs parses the command line. It returns flag.ErrHelp after
// printing the usage to stdout for -h, and a one-line error for a bad
// flag or value.
func parseArgs(args []string, stdout io.Writer) (config, error) {
	c := config{}
	size, region, rate := units.Size(64<<20), units.Size(512<<10), units.Size(0)
	fs := flag.NewFlagSet("mirror", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&c.dir, "dir", "", "directory for the leg and log files, which must not exist in it yet (default: a new temporary directory, removed at exit)")
	fs.Var(&size, "size", "mirror size (e.g. 64MiB; a bare number is bytes; a multiple of 512 bytes)")
	fs.Var(&region, "region", "region size (e.g. 512KiB; a bare number is bytes; a power of two, at least 1KiB)")
	fs.IntVar(&c.writers, "writers", 8, "concurrent writers in the workload (at least 1)")
	fs.IntVar(&c.hot, "hot", 4, "regions the workload keeps writing when the crash lands (at least 1)")
	fs.DurationVar(&c.run, "run", 400*time.Millisecond, "how long the hot workload runs before SIGKILL (positive)")
	fs.Var(&rate, "rate", "resync rate limit in bytes per second (e.g. 8MiB; 0: unlimited)")
	if err := cli.Parse(fs, args, stdout, "usage: mirror [flags]\n\nCrash a file-backed mirror with a disk log, then recover it.\n\n", ""); err != nil {
		return c, err
	}
	c.size, c.region, c.rate = int64(size), int64(region), int64(rate)
	switch {
	case fs.NArg() > 0:
		return c, fmt.Errorf("unexpected argument %q (the demo takes flags only)", fs.Arg(0))
	case c.size <= 0 || c.size%512 != 0:
		return c, fmt.Errorf("-size %s: want a positive multiple of 512 bytes", units.FormatSize(c.size))
	case c.region < 1024 || c.region&(c.region-1) != 0:
		return c, fmt.Errorf("-region %s: want a power of two of at least 1KiB", units.FormatSize(c.region))
	case c.region > c.size:
		return c, fmt.Errorf("-region %s is larger than -size %s", units.FormatSize(c.region), units.FormatSize(c.size))
	case c.writers < 1:
		return c, fmt.Errorf("-writers %d: want at least 1", c.writers)
	case c.hot < 1:
		return c, fmt.Errorf("-hot %d: want at least 1 region", c.hot)
	case c.run <= 0:
		return c, fmt.Errorf("-run %v: want a positive duration", c.run)
	}
	c.hot = int(min(int64(c.hot), (c.size+c.region-1)/c.region))
	return c, nil
}

func main() {
	c, err := parseArgs(os.Args[1:], os.Stdout)
	cli.ExitIfUsage("mirror", err)
	if os.Getenv(childEnv) != "" {
		child(c)
		return
	}
	cl := &cleaner{}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sigs
		cl.clean(true)
		fmt.Fprintf(os.Stderr, "mirror: %v: stopped, temporary files removed\n", s)
		os.Exit(128 + int(s.(syscall.Signal)))
	}()
	err = demo(c, cl)
	if cl.clean(false) {
		select {} // a signal is ending the demo: its handler reports and exits
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		os.Exit(1)
	}
}

// cleaner removes what the demo made when it ends or is interrupted: it
// kills the workload child and removes the temporary directory. Once
// cleaned it refuses new registrations (the demo is ending).
type cleaner struct {
	mu          sync.Mutex
	done        bool
	interrupted bool // a signal's handler cleaned
	dir         string
	child       *os.Process
}

// tempDir makes the demo's temporary directory and registers it.
func (c *cleaner) tempDir() (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		return "", errors.New("interrupted")
	}
	d, err := os.MkdirTemp("", "dmlog-mirror-")
	c.dir = d
	return d, err
}

// start starts cmd and registers its process.
func (c *cleaner) start(cmd *exec.Cmd) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		return errors.New("interrupted")
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	c.child = cmd.Process
	return nil
}

// childGone forgets the child once it has been waited for.
func (c *cleaner) childGone() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.child = nil
}

// clean kills the child and removes the temporary directory, once;
// bySignal says a signal's handler calls it. It reports whether a signal
// has cleaned (then the demo's own error, if any, is only a consequence:
// its child was killed and its files removed).
func (c *cleaner) clean(bySignal bool) (interrupted bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if bySignal && !c.done {
		c.interrupted = true
	}
	if c.done {
		return c.interrupted
	}
	c.done = true
	if c.child != nil {
		_ = c.child.Kill() // its open files need no cleanup; it creates none
	}
	if c.dir != "" {
		_ = os.RemoveAll(c.dir)
	}
	return c.interrupted
}

// table returns the mirror's table line; mode is "", "nosync" or "sync".
func table(size, region int64, mode string) string {
	logArgs := fmt.Sprintf("2 %s %d", logName, region/512)
	if mode != "" {
		logArgs = fmt.Sprintf("3 %s %d %s", logName, region/512, mode)
	}
	return fmt.Sprintf("0 %d mirror disk %s 2 %s 0 %s 0", size/512, logArgs, leg0, leg1)
}

// opener opens files in dir by their table names.
func opener(dir string) mirror.Opener {
	return func(name string) (mirror.Leg, error) {
		return os.OpenFile(filepath.Join(dir, name), os.O_RDWR, 0)
	}
}

// create makes a new file of n bytes; a file already there is an error
// (the demo never overwrites what it did not make).
func create(path string, n int64) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("%s already exists: the demo makes its own files (remove it or choose another -dir)", path)
	}
	if err != nil {
		return err
	}
	return errors.Join(f.Truncate(n), f.Close())
}

func demo(c config, cl *cleaner) error {
	dir, size, region := c.dir, c.size, c.region
	if dir == "" {
		d, err := cl.tempDir()
		if err != nil {
			return err
		}
		dir = d
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	nregions := (size + region - 1) / region
	logSize := (1024 + (nregions+63)/64*8 + 511) / 512 * 512
	for _, f := range []struct {
		name string
		size int64
	}{{leg0, size}, {leg1, size}, {logName, logSize}} {
		if err := create(filepath.Join(dir, f.name), f.size); err != nil {
			return err
		}
	}
	fmt.Printf("== dmlog mirror demo in %s\n", dir)
	fmt.Printf("   legs %s and %s (%s each), disk log %s, %d regions of %s\n",
		leg0, leg1, human(size), logName, nregions, human(region))

	// Create the mirror: the fresh legs are identical (all zeros), so
	// "nosync" skips the initial resync, as lvcreate --nosync does.
	m, err := mirror.Parse(table(size, region, "nosync"), opener(dir))
	if err != nil {
		return err
	}
	fmt.Printf("   dmsetup table:  0 %d mirror %s\n", size/512, m.Table())
	if err := m.Close(); err != nil {
		return err
	}

	// 1. The workload, in a child process, killed with SIGKILL.
	fmt.Printf("\n== 1. a child process writes every region, then %d writers keep %d hot region(s) busy; SIGKILL after %v\n",
		c.writers, c.hot, c.run)
	cmd := exec.Command(os.Args[0], "-dir", dir, "-size", strconv.FormatInt(size, 10),
		"-region", strconv.FormatInt(region, 10), "-writers", strconv.Itoa(c.writers), "-hot", strconv.Itoa(c.hot))
	cmd.Env = append(os.Environ(), childEnv+"=1")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cl.start(cmd); err != nil {
		return err
	}
	defer cl.childGone()
	lines := bufio.NewScanner(out)
	for lines.Scan() && strings.HasPrefix(lines.Text(), "   ") {
		fmt.Println(lines.Text())
	}
	if lines.Text() != "ready" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return fmt.Errorf("workload did not start (%q)", lines.Text())
	}
	time.Sleep(c.run)
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		return err
	}
	var last string
	for lines.Scan() {
		last = lines.Text()
	}
	err = cmd.Wait()
	fmt.Printf("   child: %s\n   child exit: %v\n", last, err)

	// 2. What the crash left behind.
	fmt.Printf("\n== 2. after the crash\n")
	lf, err := os.Open(filepath.Join(dir, logName))
	if err != nil {
		return err
	}
	img, err := dirtylog.ReadDiskImage(lf, logSize)
	lf.Close()
	if err != nil {
		return err
	}
	dirty := img.Dirty()
	differ, err := differingRegions(dir, size, region)
	if err != nil {
		return err
	}
	fmt.Printf("   disk log marks %d of %d regions dirty: %s\n", len(dirty), img.Header.NrRegions, regionList(dirty))
	fmt.Printf("   legs really differ in %d region(s): %s\n", len(differ), regionList(differ))
	isDirty := map[dirtylog.Region]bool{}
	for _, r := range dirty {
		isDirty[r] = true
	}
	for _, r := range differ {
		if !isDirty[r] {
			return fmt.Errorf("region %d differs between the legs but the log has it clean", r)
		}
	}
	switch {
	case len(differ) > 0:
		fmt.Printf("   every differing region is dirty in the log, so the resync repairs it\n")
	case len(dirty) > 0:
		fmt.Printf("   (a SIGKILL lets each started pwrite finish, so the legs seldom differ; the log\n" +
			"   cannot know that and resyncs every dirty region — a power cut, as in the\n" +
			"   mirror package's crash matrix, can leave them different)\n")
	}

	// 3. Reopen (the log is trusted: default mode) and resync.
	fmt.Printf("\n== 3. reopen and resync from the default leg\n")
	var barMu sync.Mutex
	var lastBar time.Time
	barDone := false
	bar := func(p mirror.Progress) {
		barMu.Lock()
		defer barMu.Unlock()
		if barDone || (!p.Done && time.Since(lastBar) < 100*time.Millisecond) {
			return
		}
		lastBar, barDone = time.Now(), p.Done
		const w = 40
		done := int(float64(w) * float64(p.InSync) / float64(max(p.Total, 1)))
		fmt.Printf("\r   [%s%s] %d/%d regions  %s/s  ETA %v   ", strings.Repeat("#", done), strings.Repeat(".", w-done),
			p.InSync, p.Total, human(int64(p.BytesPerSec)), p.ETA.Round(time.Millisecond))
	}
	var files []*os.File
	for _, name := range []string{leg0, leg1, logName} {
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_RDWR, 0)
		if err != nil {
			return err
		}
		files = append(files, f)
	}
	closeFiles := func() {
		for _, f := range files {
			f.Close()
		}
	}
	defer closeFiles() // after the mirror's Close, deferred below
	m, err = mirror.OpenDisk([]mirror.Leg{files[0], files[1]}, files[2],
		dirtylog.Options{RegionSize: region, Name: logName},
		mirror.Options{Size: size, Names: []string{leg0, leg1}, ResyncRate: c.rate, OnProgress: bar})
	if err != nil {
		return err
	}
	defer m.Close()
	fmt.Printf("   dmsetup status: 0 %d mirror %s\n", size/512, m.Status())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := m.WaitInSync(ctx); err != nil {
		return err
	}
	if p := m.Progress(); p.Done {
		bar(p)
	}
	fmt.Println()
	st := m.Stats()
	fmt.Printf("   resynced %d of %d regions (%.1f MiB instead of %.1f MiB): the log named the regions that needed it\n",
		st.ResyncedRegions, st.Regions, float64(st.ResyncedBytes)/(1<<20), float64(size)/(1<<20))
	if st.ResyncedRegions != int64(len(dirty)) {
		return fmt.Errorf("resynced %d regions, the log marked %d dirty", st.ResyncedRegions, len(dirty))
	}

	// 4. Verify.
	fmt.Printf("\n== 4. verify\n")
	res, err := m.Verify(ctx, false)
	if err != nil {
		return err
	}
	fmt.Printf("   mirror verify: %d regions compared, %d mismatched\n", res.Checked, len(res.Mismatched))
	if err := m.Close(); err != nil {
		return err
	}
	closeFiles() // and so their locks, before the mirror is opened again
	h0, err0 := fileHash(filepath.Join(dir, leg0))
	h1, err1 := fileHash(filepath.Join(dir, leg1))
	if err := errors.Join(err0, err1); err != nil {
		return err
	}
	fmt.Printf("   sha256 %s  %x\n   sha256 %s  %x\n", leg0, h0, leg1, h1)
	if len(res.Mismatched) != 0 || h0 != h1 {
		return errors.New("the legs differ after resync")
	}

	// 5. Status, as dmsetup prints it.
	m, err = mirror.Parse(table(size, region, ""), opener(dir))
	if err != nil {
		return err
	}
	fmt.Printf("\n== 5. kernel-style lines after recovery\n")
	fmt.Printf("   dmsetup status: 0 %d mirror %s\n", size/512, m.Status())
	fmt.Printf("   dmsetup table:  0 %d mirror %s\n", size/512, m.Table())
	if st := m.Stats(); st.InSync != st.Regions {
		return fmt.Errorf("reopened mirror not in sync: %s", m.Status())
	}
	if err := m.Close(); err != nil {
		return err
	}
	fmt.Printf("\nOK: crash recovered, legs identical.\n")
	return nil
}

// child runs the workload until killed. It first writes every region once
// and waits until the mirror has cleared them all in the log (printing
// lines that start with three spaces), then prints "ready" and keeps
// c.hot regions busy, printing a progress line now and then.
func child(c config) {
	size, region := c.size, c.region
	m, err := mirror.Parse(table(size, region, ""), opener(c.dir))
	if err != nil {
		fatal(err)
	}
	nregions := (size + region - 1) / region
	fill := func(g int) {
		buf := make([]byte, min(region, 256<<10))
		for r := int64(g); r < nregions; r += int64(c.writers) {
			for off := r * region; off < min((r+1)*region, size); off += int64(len(buf)) {
				n := min(int64(len(buf)), size-off)
				for i := range buf[:n] {
					buf[i] = byte(g) ^ byte(i>>9) ^ byte(off>>9) ^ 0x5a
				}
				if _, err := m.WriteAt(buf[:n], off); err != nil {
					fatal(err)
				}
			}
		}
	}
	var wg sync.WaitGroup
	for g := range c.writers {
		wg.Go(func() { fill(g) })
	}
	wg.Wait()
	if err := m.Sync(); err != nil {
		fatal(err)
	}
	// The mirror clears an idle region after ClearDelay (100 ms).
	deadline := time.Now().Add(30 * time.Second)
	for m.Stats().DirtyRegions > 0 {
		if time.Now().After(deadline) {
			fatal(fmt.Errorf("regions still dirty 30 s after the last write: %s", m.Status()))
		}
		time.Sleep(10 * time.Millisecond)
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	hot := rng.Perm(int(nregions))[:c.hot]
	slices.Sort(hot)
	fmt.Printf("   child: wrote all %d regions and the log cleared them; now writing only region(s) %v\n", nregions, hot)
	var writes, syncs atomic.Int64
	for g := range c.writers {
		go func() {
			rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(g)))
			buf := make([]byte, min(region, 64<<10))
			for {
				r := int64(hot[rng.IntN(len(hot))])
				lo, hi := r*region, min((r+1)*region, size)
				n := 512 * (1 + rng.Int64N(min(int64(len(buf)), hi-lo)/512))
				off := lo + 512*rng.Int64N((hi-lo-n)/512+1)
				for i := range buf[:n] {
					buf[i] = byte(g) ^ byte(i>>9) ^ byte(off>>9)
				}
				if _, err := m.WriteAt(buf[:n], off); err != nil {
					fatal(err)
				}
				if writes.Add(1)%64 == 0 {
					if err := m.Sync(); err != nil {
						fatal(err)
					}
					syncs.Add(1)
				}
			}
		}()
	}
	fmt.Println("ready")
	for {
		time.Sleep(50 * time.Millisecond)
		fmt.Printf("%d writes, %d syncs, status %s\n", writes.Load(), syncs.Load(), m.Status())
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "mirror demo:", err)
	os.Exit(1)
}

// differingRegions compares the leg files region by region.
func differingRegions(dir string, size, region int64) ([]dirtylog.Region, error) {
	a, err := os.Open(filepath.Join(dir, leg0))
	if err != nil {
		return nil, err
	}
	defer a.Close()
	b, err := os.Open(filepath.Join(dir, leg1))
	if err != nil {
		return nil, err
	}
	defer b.Close()
	ba, bb := make([]byte, region), make([]byte, region)
	var out []dirtylog.Region
	for off := int64(0); off < size; off += region {
		n := min(region, size-off)
		if _, err := a.ReadAt(ba[:n], off); err != nil && err != io.EOF {
			return nil, err
		}
		if _, err := b.ReadAt(bb[:n], off); err != nil && err != io.EOF {
			return nil, err
		}
		if !bytes.Equal(ba[:n], bb[:n]) {
			out = append(out, dirtylog.Region(off/region))
		}
	}
	return out, nil
}

func regionList(rs []dirtylog.Region) string {
	if len(rs) == 0 {
		return "none"
	}
	var parts []string
	for i, r := range rs {
		if i == 24 {
			parts = append(parts, fmt.Sprintf("… (%d more)", len(rs)-i))
			break
		}
		parts = append(parts, strconv.FormatUint(uint64(r), 10))
	}
	return strings.Join(parts, " ")
}

func fileHash(path string) ([32]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return [32]byte{}, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return [32]byte{}, err
	}
	var s [32]byte
	copy(s[:], h.Sum(nil))
	return s, nil
}

func human(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1fGiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1fKiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%dB", n)
}
