package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dmlog/dmlog/dirtylog/testdev"
	"github.com/dmlog/dmlog/logwrites"
)

// teeDev serves two Recorders with the same writes: good sees everything
// the client sends; bad is the deliberately broken configuration, a
// server that acknowledges FLUSH without passing it on, once dropFlush is
// set (after mkfs). Reads come from good.
type teeDev struct {
	good, bad *logwrites.Recorder
	dropFlush atomic.Bool
	dropped   atomic.Int64

	mu     sync.Mutex
	badErr error // the first error of bad (good's are returned)
}

func (d *teeDev) noteBad(err error) {
	if err == nil {
		return
	}
	d.mu.Lock()
	if d.badErr == nil {
		d.badErr = err
	}
	d.mu.Unlock()
}

func (d *teeDev) ReadAt(p []byte, off int64) (int, error) { return d.good.ReadAt(p, off) }

func (d *teeDev) WriteAt(p []byte, off int64) (int, error) {
	n, err := d.good.WriteAt(p, off)
	_, berr := d.bad.WriteAt(p, off)
	d.noteBad(berr)
	return n, err
}

// WriteAtFUA makes NBD_CMD_FLAG_FUA a FUA entry in both logs.
func (d *teeDev) WriteAtFUA(p []byte, off int64) (int, error) {
	n, err := d.good.WriteAtFlags(p, off, logwrites.FUA)
	_, berr := d.bad.WriteAtFlags(p, off, logwrites.FUA)
	d.noteBad(berr)
	return n, err
}

func (d *teeDev) Sync() error {
	err := d.good.Sync()
	if d.dropFlush.Load() {
		d.dropped.Add(1)
	} else {
		d.noteBad(d.bad.Sync())
	}
	return err
}

func (d *teeDev) Discard(off, n int64) error {
	err := d.good.Discard(off, n)
	d.noteBad(d.bad.Discard(off, n))
	return err
}

func (d *teeDev) mark(name string) error {
	return errors.Join(d.good.Mark(name), d.bad.Mark(name))
}

// scratchDir is where crash-state images are written: /dev/shm when it is
// a writable tmpfs, else the test's temporary directory.
func scratchDir(t *testing.T) string {
	if d, err := os.MkdirTemp("/dev/shm", "dmlog-e2e-"); err == nil {
		t.Cleanup(func() { os.RemoveAll(d) })
		return d
	}
	return t.TempDir()
}

// stateChecker is the generic/482 check of one crash state: the image is
// written out, its journal replayed and e2fsck -fn must be clean; then
// every file reported durable before the state's last mark must read back
// (with debugfs) as it was reported.
type stateChecker struct {
	e       *env
	scratch string
	durable []string
	info    map[string]fileInfo

	checked, skipped atomic.Int64
	n                atomic.Int64 // names scratch directories
}

func (c *stateChecker) check(_ context.Context, s logwrites.State) error {
	var need int
	switch {
	case s.Mark == "":
		c.skipped.Add(1) // before the "mkfs" mark: mkfs itself is not checked
		return nil
	case s.Mark == "mkfs":
	case strings.HasPrefix(s.Mark, "d"):
		i, err := strconv.Atoi(s.Mark[1:])
		if err != nil || i >= len(c.durable) {
			return fmt.Errorf("state has an unknown mark %q", s.Mark)
		}
		need = i + 1
	default:
		return fmt.Errorf("state has an unknown mark %q", s.Mark)
	}
	dir := filepath.Join(c.scratch, strconv.FormatInt(c.n.Add(1), 10))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	img := filepath.Join(dir, "img")
	if err := writeImage(img, s, devSize); err != nil {
		return err
	}
	if err := fsckImage(c.e.bin["e2fsck"], img); err != nil {
		return err
	}
	if err := checkDurable(c.e.bin["debugfs"], img, "/w", dir, c.durable[:need], c.info); err != nil {
		return err
	}
	c.checked.Add(1)
	return nil
}

// TestRecorderGeneric482 is fstests' generic/482 from Go: mkfs and the
// workload recorded through the NBD server on a logwrites.Recorder (a mark
// "mkfs" after mkfs, a mark after each durable file the guest reports),
// then the crash state at every FLUSH and FUA entry after the mark,
// built incrementally by logwrites.Explore, must pass e2fsck after its
// journal replay and hold every durable file. The same run also records
// a broken configuration (FLUSH acknowledged without reaching the
// Recorder), whose states must fail.
func TestRecorderGeneric482(t *testing.T) {
	e := requireE2E(t)
	ctx := context.Background()
	dir := t.TempDir()
	newRec := func(name string) (*logwrites.Recorder, *os.File) {
		lf, err := os.Create(filepath.Join(dir, name+".log"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { lf.Close() })
		rec, err := logwrites.New(testdev.NewMemory(devSize), lf, logwrites.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return rec, lf
	}
	good, goodLog := newRec("good")
	bad, badLog := newRec("bad")
	tee := &teeDev{good: good, bad: bad}
	srv := serve(t, tee, devSize)

	var (
		mu       sync.Mutex
		markErrs []error
		ndurable int
	)
	onLine := func(line string) {
		var err error
		switch {
		case strings.HasPrefix(line, "step mkfs ok"):
			err = tee.mark("mkfs")
			tee.dropFlush.Store(true)
		case strings.HasPrefix(line, "durable "):
			mu.Lock()
			i := ndurable
			ndurable++
			mu.Unlock()
			err = tee.mark(fmt.Sprintf("d%d", i))
		}
		if err != nil {
			mu.Lock()
			markErrs = append(markErrs, err)
			mu.Unlock()
		}
	}
	tRec := time.Now()
	res := e.run(t, "recording mkfs and the workload", bootOptions{name: "record", sock: srv.sock, steps: stepsFull, seed: workloadSeed, onLine: onLine})
	srv.close(t)
	recWall := time.Since(tRec)
	mu.Lock()
	markErr := errors.Join(markErrs...)
	mu.Unlock()
	if markErr != nil {
		t.Fatalf("marking the logs: %v", markErr)
	}
	if err := errors.Join(good.Close(), bad.Close()); err != nil {
		t.Fatalf("closing the recorders: %v", err)
	}
	tee.mu.Lock()
	badErr := tee.badErr
	tee.mu.Unlock()
	if badErr != nil {
		t.Fatalf("the broken configuration's recorder failed: %v", badErr)
	}
	if good.Err() != nil {
		t.Fatalf("recording: %v", good.Err())
	}
	st := srv.stats
	if st.FUAWrites == 0 || st.Flushes == 0 {
		t.Fatalf("the guest sent %d FUA writes and %d flushes: the path from the guest to the server loses them", st.FUAWrites, st.Flushes)
	}
	t.Logf("recorded: boot wall %v, mkfs %v, workload %v; NBD %d writes (%d FUA), %d flushes; %d durable files; the broken server dropped %d flushes",
		recWall.Round(time.Millisecond), res.steps["mkfs"], res.steps["workload"], st.Writes, st.FUAWrites, st.Flushes, len(res.durable), tee.dropped.Load())

	opts := logwrites.ExploreOptions{MaxSubsetStates: -1, MaxStates: -1, Parallel: 2, DeviceSize: devSize}
	if long() {
		// Subsets of the unflushed writes at each cut too. Not torn ones:
		// Explore tears at 512 bytes, but the guest's device has 4 KiB
		// logical blocks (nbd-client -b 4096), which it may assume are
		// written whole: a torn superblock is then not a state this
		// device can leave.
		opts.MaxSubsetStates = 8
	}
	explore := func(name string, lf *os.File) (logwrites.ExploreStats, *stateChecker, time.Duration, error) {
		log, err := logwrites.Open(lf)
		if err != nil {
			t.Fatalf("%s log: %v", name, err)
		}
		c := &stateChecker{e: e, scratch: scratchDir(t), durable: res.durable, info: res.durables}
		t0 := time.Now()
		stats, err := logwrites.Explore(ctx, log, nil, opts, c.check)
		return stats, c, time.Since(t0), err
	}

	stats, c, d, err := explore("good", goodLog)
	if err != nil {
		t.Fatalf("a crash state of the honest recording fails: %v", err)
	}
	if c.checked.Load() == 0 {
		t.Fatal("no crash state after the mkfs mark was checked")
	}
	t.Logf("generic/482: %d log entries, %d states (%d prefix, %d subset, %d duplicates skipped), %d before the mkfs mark skipped, %d checked clean with every durable file in %v: %.1f states/s",
		stats.Entries, stats.States, stats.Prefix, stats.Subset, stats.Duplicates, c.skipped.Load(), c.checked.Load(), d.Round(time.Millisecond), float64(c.checked.Load())/d.Seconds())

	stats, c, d, err = explore("broken", badLog)
	var se *logwrites.StateError
	if !errors.As(err, &se) || !errors.Is(err, errFsck) {
		t.Fatalf("the broken configuration (FLUSH acknowledged, not recorded) was not caught: %d states checked, error %v", c.checked.Load(), err)
	}
	t.Logf("broken configuration caught after %d clean states in %v: %v", c.checked.Load(), d.Round(time.Millisecond), se)
}
