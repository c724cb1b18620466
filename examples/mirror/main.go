// Command mirror is dmlog's main demo: a RAID1 mirror over two file-backed
// legs with a disk log, crashed for real and recovered.
//
//	go run ./examples/mirror [-dir DIR] [-size 64MiB] [-region 512KiB] [-writers 8] [-run 400ms] [-rate 0]
//
// It creates two leg files and a log file (in a temporary directory, or
// DIR), starts a child process that runs a concurrent write workload on
// the mirror, and kills it with SIGKILL in mid-flight. It then reopens the
// mirror, shows which regions the disk log marks dirty (and which of them
// the legs really disagree on), resyncs them with a progress bar, verifies
// that the legs are identical and prints the kernel-style status and table
// lines. It exits 0 on success and 1 on any mismatch.
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
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dmlog/dmlog/dirtylog"
	"github.com/dmlog/dmlog/mirror"
)

// childEnv marks the re-executed workload process.
const childEnv = "DMLOG_MIRROR_DEMO_CHILD"

const (
	leg0, leg1, logName = "leg0.img", "leg1.img", "log.img"
)

func main() {
	dir := flag.String("dir", "", "directory for the leg and log files (default: a new temporary directory, removed at exit)")
	sizeS := flag.String("size", "64MiB", "mirror size")
	regionS := flag.String("region", "512KiB", "region size (a power of two, at least 1KiB)")
	writers := flag.Int("writers", 8, "concurrent writers in the workload")
	run := flag.Duration("run", 400*time.Millisecond, "how long the workload runs before SIGKILL")
	rateS := flag.String("rate", "0", "resync rate limit in bytes/s (0: unlimited)")
	flag.Parse()
	size, err1 := parseSize(*sizeS)
	region, err2 := parseSize(*regionS)
	rate, err3 := parseSize(*rateS)
	if err := errors.Join(err1, err2, err3); err != nil {
		fatal(err)
	}
	if os.Getenv(childEnv) != "" {
		child(*dir, size, region, *writers)
		return
	}
	if err := demo(*dir, size, region, rate, *writers, *run); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		os.Exit(1)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "mirror demo:", err)
	os.Exit(2)
}

func parseSize(s string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suf string
		m   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}} {
		if strings.HasSuffix(s, u.suf) {
			s, mult = strings.TrimSuffix(s, u.suf), u.m
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return n * mult, nil
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

func demo(dir string, size, region, rate int64, writers int, run time.Duration) error {
	if dir == "" {
		d, err := os.MkdirTemp("", "dmlog-mirror-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	nregions := (size + region - 1) / region
	logSize := (1024 + (nregions+63)/64*8 + 511) / 512 * 512
	for name, n := range map[string]int64{leg0: size, leg1: size, logName: logSize} {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		err = errors.Join(f.Truncate(n), f.Close())
		if err != nil {
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
	fmt.Printf("\n== 1. %d concurrent writers in a child process; SIGKILL after %v\n", writers, run)
	cmd := exec.Command(os.Args[0], "-dir", dir, "-size", strconv.FormatInt(size, 10),
		"-region", strconv.FormatInt(region, 10), "-writers", strconv.Itoa(writers))
	cmd.Env = append(os.Environ(), childEnv+"=1")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	lines := bufio.NewScanner(out)
	if !lines.Scan() || lines.Text() != "ready" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return fmt.Errorf("workload did not start (%q)", lines.Text())
	}
	time.Sleep(run)
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
	m, err = mirror.ParseWithOptions(table(size, region, ""), opener(dir), mirror.Options{ResyncRate: rate, OnProgress: bar})
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

// child runs the workload until killed. It prints "ready" once writing,
// and a progress line now and then.
func child(dir string, size, region int64, writers int) {
	m, err := mirror.Parse(table(size, region, ""), opener(dir))
	if err != nil {
		fatal(err)
	}
	var writes, syncs atomic.Int64
	var wg sync.WaitGroup
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(g)))
			buf := make([]byte, 256<<10)
			for {
				n := 512 * (1 + rng.Int64N(int64(len(buf))/512))
				off := 512 * rng.Int64N((size-n)/512+1)
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
