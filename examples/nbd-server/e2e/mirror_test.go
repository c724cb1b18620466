package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dmlog/dmlog/dirtylog"
	"github.com/dmlog/dmlog/dirtylog/testdev"
	"github.com/dmlog/dmlog/mirror"
)

const (
	devSize      = 128 << 20 // the ext4 file system
	regionSize   = 64 << 10  // the mirror's region
	logDevSize   = 64 << 10  // the disk log's device
	workloadSeed = 1         // the guest workload's seed in every boot
)

var (
	stepsMkfs     = []string{"mkfs"}
	stepsWorkload = []string{"mount", "workload", "list", "umount"}
	stepsFull     = []string{"mkfs", "mount", "workload", "list", "umount"}
	stepsCheck    = []string{"mount", "list", "umount"}
)

// mirrorSet is a two-leg mirror on crash-capable in-memory devices (the
// legs and the disk log) sharing one power switch.
type mirrorSet struct {
	p           *testdev.Power
	legs        [2]*testdev.Memory
	log         *testdev.Memory
	m           *mirror.Mirror
	dirtyAtOpen uint64 // regions the log had out of sync when opened
}

// openMirror opens a mirror over the devices (new power) with the disk log
// in mode sync; the resync is left to the caller (NoResync).
// With lie, the legs acknowledge Sync without syncing (a broken device).
func openMirror(legs [2]*testdev.Memory, log *testdev.Memory, sync dirtylog.SyncMode, lie bool) (*mirrorSet, error) {
	s := &mirrorSet{p: &testdev.Power{}, legs: legs, log: log}
	l0, l1 := onPower(s.p, legs[0], lie), onPower(s.p, legs[1], lie)
	m, err := mirror.OpenDisk([]mirror.Leg{l0, l1}, s.p.Device(log),
		dirtylog.Options{RegionSize: regionSize, DeviceSize: devSize, Sync: sync},
		mirror.Options{Size: devSize, NoResync: true, Names: []string{"leg0", "leg1"}})
	if err != nil {
		return nil, err
	}
	s.m = m
	st := m.Stats()
	s.dirtyAtOpen = st.Regions - st.InSync
	return s, nil
}

// closeWithin closes the mirror, failing if it takes longer than d (it
// must not hang, even on devices whose power was cut).
// Its error is not interesting: the devices fail every I/O.
func closeWithin(m *mirror.Mirror, d time.Duration) bool {
	done := make(chan error, 1)
	go func() { done <- m.Close() }()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// goldenImages is the state after mkfs on a mirror closed in order: the
// legs' and the log's bytes, which every power-cut trial starts from.
type goldenImages struct {
	legs [2][]byte
	log  []byte
}

func (g *goldenImages) devices() ([2]*testdev.Memory, *testdev.Memory) {
	return [2]*testdev.Memory{testdev.NewMemoryFrom(g.legs[0]), testdev.NewMemoryFrom(g.legs[1])}, testdev.NewMemoryFrom(g.log)
}

// sameTree compares two guest listings: every directory and every file's
// size and sha256.
func sameTree(a, b *bootResult) error {
	var diffs []string
	for _, p := range slices.Sorted(maps.Keys(a.files)) {
		if fb, ok := b.files[p]; !ok {
			diffs = append(diffs, "only in the first: "+p)
		} else if fb != a.files[p] {
			diffs = append(diffs, fmt.Sprintf("%s: %d bytes %s vs %d bytes %s", p, a.files[p].size, a.files[p].sum[:12], fb.size, fb.sum[:12]))
		}
	}
	for _, p := range slices.Sorted(maps.Keys(b.files)) {
		if _, ok := a.files[p]; !ok {
			diffs = append(diffs, "only in the second: "+p)
		}
	}
	da, db := slices.Sorted(slices.Values(a.dirs)), slices.Sorted(slices.Values(b.dirs))
	if !slices.Equal(da, db) {
		diffs = append(diffs, fmt.Sprintf("directories differ: %v vs %v", da, db))
	}
	if len(diffs) > 0 {
		if len(diffs) > 10 {
			diffs = append(diffs[:10], fmt.Sprintf("... %d more", len(diffs)-10))
		}
		return fmt.Errorf("file trees differ:\n  %s", strings.Join(diffs, "\n  "))
	}
	return nil
}

// checkDurableListing checks that every durable file of the run is in the
// listing with its size and sha256.
func checkDurableListing(run, check *bootResult) error {
	var lost []string
	for _, p := range run.durable {
		got, ok := check.files[p]
		switch {
		case !ok:
			lost = append(lost, p+" missing")
		case got != run.durables[p]:
			lost = append(lost, fmt.Sprintf("%s reads %d bytes %s, durable as %d bytes %s", p, got.size, got.sum[:12], run.durables[p].size, run.durables[p].sum[:12]))
		}
	}
	if len(lost) > 0 {
		n := len(lost)
		if n > 5 {
			lost = append(lost[:5], "...")
		}
		return fmt.Errorf("%d of %d durable files lost or changed: %s", n, len(run.durable), strings.Join(lost, "; "))
	}
	return nil
}

// run boots a guest, waits for it, and fails the test if it did not end
// its steps or reported errors.
func (e *env) run(t *testing.T, what string, o bootOptions) *bootResult {
	t.Helper()
	res, err := e.boot(t, o).wait(context.Background())
	return mustResult(t, what, res, err)
}

func mustResult(t *testing.T, what string, res *bootResult, err error) *bootResult {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v\nconsole tail:\n%s", what, err, tailFile(res.console, 40))
	}
	if len(res.errors) > 0 {
		t.Fatalf("%s: the guest reported errors: %v\nconsole tail:\n%s", what, res.errors, tailFile(res.console, 40))
	}
	return res
}

// TestMirrorExt4 runs ext4 on a two-leg Mirror served over NBD to a qemu
// guest: the same workload on a plain file as a baseline; an orderly run
// whose file tree must equal the baseline's, with identical legs; then
// power cuts at seeded points of the workload, after which the mirror is
// reopened from the crashed devices, resynced and verified, and a new
// guest must find every durable file.
func TestMirrorExt4(t *testing.T) {
	e := requireE2E(t)
	tStart := time.Now()

	// The baseline: the workload on a plain file.
	img := filepath.Join(t.TempDir(), "baseline.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(devSize); err != nil {
		t.Fatal(err)
	}
	srv := serve(t, f, devSize)
	base := e.run(t, "baseline on a file", bootOptions{name: "baseline", sock: srv.sock, steps: stepsFull, seed: workloadSeed})
	srv.close(t)
	f.Close()
	if err := fsckImage(e.bin["e2fsck"], img); err != nil {
		t.Fatalf("baseline image: %v", err)
	}
	t.Logf("baseline (-file): boot to NBD attached %v, mkfs %v, workload %v (%s), boot wall %v; %d files, %d durable",
		base.attached.Round(time.Millisecond), base.steps["mkfs"], base.steps["workload"], base.workload, base.wall.Round(time.Millisecond), len(base.files), len(base.durable))

	// mkfs on a fresh mirror (zeroed legs: nosync), closed in order.
	legs := [2]*testdev.Memory{testdev.NewMemory(devSize), testdev.NewMemory(devSize)}
	logMem := testdev.NewMemory(logDevSize)
	ms, err := openMirror(legs, logMem, dirtylog.NoSync, false)
	if err != nil {
		t.Fatal(err)
	}
	srv = serve(t, ms.m, devSize)
	mk := e.run(t, "mkfs on the mirror", bootOptions{name: "mkfs", sock: srv.sock, steps: stepsMkfs, seed: workloadSeed})
	srv.close(t)
	if err := ms.m.Close(); err != nil {
		t.Fatalf("closing the mirror after mkfs: %v", err)
	}
	golden := &goldenImages{legs: [2][]byte{legs[0].DurableBytes(), legs[1].DurableBytes()}, log: logMem.DurableBytes()}
	if !bytes.Equal(golden.legs[0], golden.legs[1]) {
		t.Fatal("legs differ after mkfs and an orderly close")
	}
	t.Logf("mkfs on the mirror: %v (boot wall %v)", mk.steps["mkfs"], mk.wall.Round(time.Millisecond))

	// The orderly run from the golden state.
	legs, logMem = golden.devices()
	ms, err = openMirror(legs, logMem, dirtylog.DefaultSync, false)
	if err != nil {
		t.Fatal(err)
	}
	if ms.dirtyAtOpen != 0 {
		t.Fatalf("the golden log has %d regions out of sync after an orderly close", ms.dirtyAtOpen)
	}
	counter := &cutter{dev: ms.m, p: ms.p}
	srv = serve(t, counter, devSize)
	orderly := e.run(t, "orderly run on the mirror", bootOptions{name: "orderly", sock: srv.sock, steps: stepsWorkload, seed: workloadSeed})
	srv.close(t)
	if err := ms.m.Close(); err != nil {
		t.Fatalf("closing the mirror after the orderly run: %v", err)
	}
	if !bytes.Equal(legs[0].Bytes(), legs[1].Bytes()) {
		t.Fatal("legs differ after the orderly run")
	}
	if err := sameTree(base, orderly); err != nil {
		t.Fatalf("the mirror's tree after the orderly run differs from the -file baseline: %v", err)
	}
	if err := checkDurableListing(orderly, orderly); err != nil {
		t.Fatalf("orderly run: %v", err)
	}
	for i, l := range legs {
		p := filepath.Join(t.TempDir(), fmt.Sprintf("leg%d.img", i))
		if err := writeImage(p, l, devSize); err != nil {
			t.Fatal(err)
		}
		if err := fsckImage(e.bin["e2fsck"], p); err != nil {
			t.Fatalf("leg %d after the orderly run: %v", i, err)
		}
	}
	writes := counter.writes.Load()
	st := srv.stats
	if st.FUAWrites == 0 || st.Flushes == 0 {
		t.Fatalf("the guest sent %d FUA writes and %d flushes: the path from the guest to the server loses them", st.FUAWrites, st.Flushes)
	}
	t.Logf("orderly run on the mirror: workload %v (%s), boot wall %v; NBD: %d writes (%d FUA), %d flushes, %d trims; tree equals the -file baseline (%d files)",
		orderly.steps["workload"], orderly.workload, orderly.wall.Round(time.Millisecond), st.Writes, st.FUAWrites, st.Flushes, st.Trims, len(orderly.files))

	// Power cuts.
	cuts := 3
	if long() {
		cuts = 20
	}
	cuts = envInt(t, "DMLOG_E2E_CUTS", cuts)
	seed := envSeed(t, "DMLOG_E2E_SEED", 1)
	t.Logf("power cuts: %d, seeds %d..%d (DMLOG_E2E_SEED=S DMLOG_E2E_CUTS=1 replays seed S)", cuts, seed, seed+uint64(cuts)-1)
	survived := 0
	tCuts := time.Now()
	for i := range cuts {
		s := seed + uint64(i)
		ok := t.Run(fmt.Sprintf("cut-seed-%d", s), func(t *testing.T) {
			powerCut(t, e, golden, writes, s)
		})
		if ok {
			survived++
		}
	}
	cutsTime := time.Since(tCuts)

	// The negative control: legs that acknowledge Sync without syncing
	// lose durable files at a power cut, and the checks above see it.
	t.Run("negative-lying-legs", func(t *testing.T) {
		plan := cutPlan{name: "lying", at: writes * 3 / 4, lie: true}
		for i := range plan.crashes {
			plan.crashes[i] = testdev.CrashOptions{Mode: testdev.DropAll}
		}
		out := runCut(t, e, golden, plan)
		err := errors.Join(out.checkErr, out.durableErr, out.fsckErr)
		if err == nil {
			t.Fatalf("legs that do not sync lost nothing at a power cut: %d durable files reported, all found", len(out.run.durable))
		}
		t.Logf("caught: %v", err)
	})
	t.Logf("power cuts: %d run, %d survived in %v (%.1f s per cut); whole test %v",
		cuts, survived, cutsTime.Round(time.Second), cutsTime.Seconds()/float64(max(cuts, 1)), time.Since(tStart).Round(time.Second))
}

// cutPlan is one power cut: at which write the power goes, how each
// device crashes, and whether the legs lie about Sync (the negative
// control).
type cutPlan struct {
	name    string
	at      int64                   // the write (from 1) that cuts the power
	crashes [3]testdev.CrashOptions // leg0, leg1, log
	lie     bool                    // the legs acknowledge Sync without syncing
}

// cutOutcome is what a power cut and the recovery found. Infrastructure
// failures (the mirror cannot be reopened or resynced) fail the test at
// once; the checks that the negative control expects to fail are
// returned.
type cutOutcome struct {
	run, check  *bootResult
	cutAfterEnd bool
	durableErr  error // a durable file lost or changed
	checkErr    error // the check boot failed (mount, listing)
	fsckErr     error // e2fsck on leg 0
}

// seededPlan draws a power cut from seed.
func seededPlan(seed uint64, writes int64) cutPlan {
	rng := rand.New(rand.NewPCG(seed, 0xc0ffee))
	p := cutPlan{name: fmt.Sprintf("cut%d", seed), at: 1 + rng.Int64N(max(writes*19/20, 1))}
	for i := range p.crashes {
		p.crashes[i] = testdev.CrashOptions{Mode: testdev.CrashMode(rng.IntN(3)), Seed: rng.Uint64(), Tear: rng.IntN(2) == 0}
		if i < 2 {
			// No torn leg writes: the guest's device has 4 KiB logical
			// blocks (nbd-client -b 4096), which ext4 may assume are
			// written whole, and testdev tears at 512 bytes. The log's
			// writes may tear: it uses 512-byte blocks.
			p.crashes[i].Tear = false
		}
	}
	return p
}

// powerCut runs one seeded power cut and requires that the mirror
// recovers with identical legs and every durable file intact.
func powerCut(t *testing.T, e *env, golden *goldenImages, writes int64, seed uint64) {
	defer func() {
		if t.Failed() {
			t.Logf("FAILED power cut: seed %d (replay with DMLOG_E2E_SEED=%d DMLOG_E2E_CUTS=1)", seed, seed)
		}
	}()
	out := runCut(t, e, golden, seededPlan(seed, writes))
	if err := errors.Join(out.checkErr, out.durableErr, out.fsckErr); err != nil {
		t.Fatal(err)
	}
	t.Logf("survived: %d durable files intact, %d files listed, e2fsck -fn clean", len(out.run.durable), len(out.check.files))
}

// runCut runs the workload from the golden state until the planned write,
// cuts the power (that write and all later I/O fail), kills qemu, crashes
// every device as planned (each loses all, a seeded subset or none of
// what it had not synced), then reopens the mirror from the crashed
// devices, resyncs what the disk log says, verifies the legs identical,
// and boots a guest that mounts the file system (journal replay) and lists
// it; finally e2fsck -fn runs on a copy of leg 0.
func runCut(t *testing.T, e *env, golden *goldenImages, plan cutPlan) cutOutcome {
	ctx := context.Background()
	var out cutOutcome
	legs, logMem := golden.devices()
	ms, err := openMirror(legs, logMem, dirtylog.DefaultSync, plan.lie)
	if err != nil {
		t.Fatal(err)
	}
	c := &cutter{dev: ms.m, p: ms.p, at: plan.at, tripped: make(chan struct{})}
	srv := serve(t, c, devSize)
	g := e.boot(t, bootOptions{name: plan.name, sock: srv.sock, steps: stepsWorkload, seed: workloadSeed})
	type waited struct {
		res *bootResult
		err error
	}
	waitCh := make(chan waited, 1)
	go func() {
		res, err := g.wait(ctx)
		waitCh <- waited{res, err}
	}()
	select {
	case <-c.tripped:
		g.kill()
		out.run = (<-waitCh).res
	case w := <-waitCh:
		out.run = mustResult(t, "workload before the cut", w.res, w.err)
		out.cutAfterEnd = true
		ms.p.Cut()
	}
	srv.close(t)
	t.Logf("server during the cut: %s", srv.logSummary())
	if !closeWithin(ms.m, time.Minute) {
		t.Fatal("the mirror's Close hangs after the power cut")
	}
	var reports []string
	for i, d := range []*testdev.Memory{legs[0], legs[1], logMem} {
		o := plan.crashes[i]
		r := d.Crash(o)
		reports = append(reports, fmt.Sprintf("%s %v tear=%v kept %d/%d", []string{"leg0", "leg1", "log"}[i], o.Mode, o.Tear, r.Kept, r.Pending))
	}
	t.Logf("cut at write %d (after the end: %v), %d durable files reported; crash: %s",
		plan.at, out.cutAfterEnd, len(out.run.durable), strings.Join(reports, ", "))

	// Without the log the crashed legs may differ where writes were in
	// flight: a mirror that ignores its log (nosync) must see that in
	// Verify, or the resync below proves nothing.
	if !bytes.Equal(legs[0].Bytes(), legs[1].Bytes()) {
		l0, l1 := testdev.NewMemoryFrom(legs[0].Bytes()), testdev.NewMemoryFrom(legs[1].Bytes())
		blind, err := openMirror([2]*testdev.Memory{l0, l1}, testdev.NewMemory(logDevSize), dirtylog.NoSync, false)
		if err != nil {
			t.Fatal(err)
		}
		vr, err := blind.m.Verify(ctx, false)
		if err != nil {
			t.Fatal(err)
		}
		_ = blind.m.Close()
		if len(vr.Mismatched) == 0 {
			t.Fatal("the crashed legs differ but Verify of a mirror opened without its log finds no mismatch")
		}
		t.Logf("crashed legs differ in %d regions (seen by Verify with the log ignored)", len(vr.Mismatched))
	}

	// Recovery: reopen from the crashed devices, resync what the log says,
	// verify.
	t0 := time.Now()
	ms2, err := openMirror(legs, logMem, dirtylog.DefaultSync, false)
	if err != nil {
		t.Fatalf("reopening the mirror after the cut: %v", err)
	}
	if err := ms2.m.Resync(ctx); err != nil {
		t.Fatalf("resync: %v", err)
	}
	vr, err := ms2.m.Verify(ctx, false)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if len(vr.Mismatched) > 0 || vr.OutOfSync > 0 || vr.ReadErrors > 0 {
		t.Fatalf("after resync the legs differ: %d regions mismatched (%v), %d out of sync, %d read errors",
			len(vr.Mismatched), vr.Mismatched[:min(len(vr.Mismatched), 8)], vr.OutOfSync, vr.ReadErrors)
	}
	t.Logf("recovery: %d regions dirty in the log, resynced %d, verified %d in %v",
		ms2.dirtyAtOpen, ms2.m.Stats().ResyncedRegions, vr.Checked, time.Since(t0).Round(time.Millisecond))

	// A new guest mounts it (journal replay) and lists the tree.
	srv2 := serve(t, ms2.m, devSize)
	res, err := e.boot(t, bootOptions{name: plan.name + "-check", sock: srv2.sock, steps: stepsCheck, seed: workloadSeed}).wait(ctx)
	srv2.close(t)
	out.check = res
	if err == nil && len(res.errors) > 0 {
		err = fmt.Errorf("the guest reported errors: %v", res.errors)
	}
	if err != nil {
		out.checkErr = fmt.Errorf("check boot after the cut: %w\nconsole tail:\n%s", err, tailFile(res.console, 30))
	}
	if err := ms2.m.Close(); err != nil {
		t.Fatalf("closing the recovered mirror: %v", err)
	}
	if !bytes.Equal(legs[0].Bytes(), legs[1].Bytes()) {
		t.Fatal("legs differ after the check boot")
	}
	if out.checkErr == nil {
		out.durableErr = checkDurableListing(out.run, out.check)
	}
	p := filepath.Join(t.TempDir(), "leg0.img")
	if err := writeImage(p, legs[0], devSize); err != nil {
		t.Fatal(err)
	}
	if err := fsckImage(e.bin["e2fsck"], p); err != nil {
		out.fsckErr = fmt.Errorf("leg 0 after recovery: %w", err)
	}
	return out
}
