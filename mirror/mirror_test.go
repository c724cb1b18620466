package mirror

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dmlog/dmlog/dirtylog"
	"github.com/dmlog/dmlog/dirtylog/testdev"
	"github.com/dmlog/dmlog/internal/lebitmap"
)

func TestWriteReadLegsIdentical(t *testing.T) {
	r := newRig(t, rigOpts{sync: dirtylog.NoSync, disk: true})
	p := fill(10000, 'x')
	if n, err := r.m.WriteAt(p, 3000); err != nil || n != len(p) {
		t.Fatalf("WriteAt = %d, %v", n, err)
	}
	got := make([]byte, len(p))
	if _, err := r.m.ReadAt(got, 3000); err != nil || !bytes.Equal(got, p) {
		t.Fatalf("ReadAt = %v, equal %v", err, bytes.Equal(got, p))
	}
	r.legsIdentical(t)
	// Reads past the end: io.ReaderAt semantics.
	if n, err := r.m.ReadAt(make([]byte, 100), r.m.Size()-10); n != 10 || err == nil {
		t.Fatalf("ReadAt at end = %d, %v", n, err)
	}
	if _, err := r.m.WriteAt(make([]byte, 100), r.m.Size()-10); !errors.Is(err, ErrRange) {
		t.Fatalf("WriteAt past end = %v", err)
	}
}

// markCheckLeg checks, on every write, that the log device's durable bytes
// already mark the written regions dirty.
type markCheckLeg struct {
	Leg
	logDev *testdev.Memory
	rs     int64
	bad    atomic.Int64
	n      atomic.Int64
}

func (l *markCheckLeg) WriteAt(p []byte, off int64) (int, error) {
	img := l.logDev.DurableBytes()
	words := make([]uint64, 1)
	lebitmap.DecodeWords(words, img[1024:1032])
	for r := off / l.rs; r <= (off+int64(len(p))-1)/l.rs; r++ {
		if words[0]&(1<<r) != 0 {
			l.bad.Add(1)
		}
	}
	l.n.Add(1)
	return l.Leg.WriteAt(p, off)
}

func TestMarkDurableBeforeLegWrite(t *testing.T) {
	logDev := testdev.NewMemory(4096)
	var legs []Leg
	var checks []*markCheckLeg
	for range 2 {
		c := &markCheckLeg{Leg: testdev.NewMemory(64 << 10), logDev: logDev, rs: 4096}
		checks = append(checks, c)
		legs = append(legs, c)
	}
	m, err := OpenDisk(legs, logDev, dirtylog.Options{RegionSize: 4096, DeviceSize: 64 << 10, Sync: dirtylog.NoSync},
		Options{ClearDelay: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			for range 50 {
				off := rng.Int64N(60 << 10)
				if _, err := m.WriteAt(fill(1+rng.IntN(4096), byte(g)), off); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	for i, c := range checks {
		if c.n.Load() == 0 || c.bad.Load() != 0 {
			t.Fatalf("leg %d: %d of %d writes reached the leg before their region was durably dirty", i, c.bad.Load(), c.n.Load())
		}
	}
	// Once idle and flushed, the regions are clean again on the device.
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	// (Clears are written without a device sync, as the kernel does.)
	img := logDev.Bytes()
	if got := img[1024:1026]; got[0] != 0xff || got[1] != 0xff {
		t.Fatalf("log bitmap after close %x, want all clean", got)
	}
}

// slowSyncDev delays Sync, to give writers time to pile up on one flush.
type slowSyncDev struct {
	*testdev.Memory
	d time.Duration
}

func (s *slowSyncDev) Sync() error { time.Sleep(s.d); return s.Memory.Sync() }

func TestGroupCommit(t *testing.T) {
	logDev := &slowSyncDev{Memory: testdev.NewMemory(4096), d: 2 * time.Millisecond}
	legs := []Leg{testdev.NewMemory(1 << 20), testdev.NewMemory(1 << 20)}
	m, err := OpenDisk(legs, logDev, dirtylog.Options{RegionSize: 4096, DeviceSize: 1 << 20, Sync: dirtylog.NoSync}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	const writers, each = 16, 8
	var wg sync.WaitGroup
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range each {
				// Every write marks a fresh region.
				if _, err := m.WriteAt(fill(512, 'g'), int64(g*each+k)*4096); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	s := m.Stats()
	if s.FlushWaits != writers*each {
		t.Fatalf("FlushWaits = %d, want %d", s.FlushWaits, writers*each)
	}
	if s.LogFlushes*2 > s.FlushWaits {
		t.Fatalf("%d flushes for %d marking writes: no group commit", s.LogFlushes, s.FlushWaits)
	}
	// A second write to a region still marked skips the flush.
	before := m.Stats().LogFlushes
	if _, err := m.WriteAt(fill(512, 'h'), 0); err != nil {
		t.Fatal(err)
	}
	if after := m.Stats(); after.LogFlushes != before || after.FlushSkips == 0 {
		t.Fatalf("write to a durably dirty region flushed the log (%d -> %d)", before, after.LogFlushes)
	}
}

func TestNosyncWritesDefaultLegOnly(t *testing.T) {
	// A core log in default mode starts with every region out of sync.
	r := newRig(t, rigOpts{opts: Options{NoResync: true}})
	p := fill(4096, 'n')
	if _, err := r.m.WriteAt(p, 8192); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(r.legs[0].Bytes()[8192:8192+4096], p) {
		t.Fatal("default leg lacks the write")
	}
	if bytes.Equal(r.legs[1].Bytes()[8192:8192+4096], p) {
		t.Fatal("an out-of-sync region was written to a non-default leg")
	}
	if clean, _ := r.m.Log().IsClean(context.Background(), 2); !clean {
		t.Fatal("an out-of-sync write marked the log")
	}
	// Reads come from the default leg, whatever the policy.
	got := make([]byte, 4096)
	for range 4 {
		if _, err := r.m.ReadAt(got, 8192); err != nil || !bytes.Equal(got, p) {
			t.Fatal("read of out-of-sync region not from the default leg")
		}
	}
	if err := r.m.Resync(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.legsIdentical(t)
	if got := r.m.Status(); got != "2 leg0 leg1 16/16 1 AA 1 core" {
		t.Fatalf("status %q", got)
	}
}

// gateLeg blocks reads while gated (to hold a resync copy mid-flight).
type gateLeg struct {
	Leg
	mu      sync.Mutex
	gate    chan struct{}
	waiting chan struct{}
}

func (g *gateLeg) ReadAt(p []byte, off int64) (int, error) {
	g.mu.Lock()
	gate := g.gate
	g.mu.Unlock()
	if gate != nil {
		select {
		case g.waiting <- struct{}{}:
		default:
		}
		<-gate
	}
	return g.Leg.ReadAt(p, off)
}

func TestWriteToRecoveringRegionWaits(t *testing.T) {
	size := int64(8 << 10)
	l0 := &gateLeg{Leg: testdev.NewMemory(size), gate: make(chan struct{}), waiting: make(chan struct{}, 1)}
	l1 := testdev.NewMemory(size)
	if _, err := l0.Leg.WriteAt(fill(int(size), 'o'), 0); err != nil {
		t.Fatal(err)
	}
	log, _ := dirtylog.NewCore(dirtylog.Options{RegionSize: 4096, DeviceSize: size})
	m, err := New([]Leg{l0, l1}, log, Options{ResyncParallel: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	<-l0.waiting // the copy of region 0 is reading the default leg
	done := make(chan error, 1)
	p := fill(100, 'w')
	go func() { _, err := m.WriteAt(p, 10); done <- err }()
	// Deterministic: the write parks on the mirror's condition (the only
	// waiter here: every region is out of sync, so no write waits for a
	// flush), and only the end of the copy can release it.
	waitFor(t, "the write to park", func() bool { return m.waiters.Load() > 0 })
	select {
	case err := <-done:
		t.Fatalf("write to a recovering region completed during the copy (%v)", err)
	default:
	}
	l0.mu.Lock()
	close(l0.gate)
	l0.gate = nil
	l0.mu.Unlock()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	(&rig{m: m}).waitSync(t)
	if !bytes.Equal(l0.Leg.(*testdev.Memory).Bytes(), l1.Bytes()) {
		t.Fatal("legs differ: the parked write did not reach every leg after the copy")
	}
	if !bytes.Equal(l1.Bytes()[10:110], p) {
		t.Fatal("write lost")
	}
}

func TestOverlappingConcurrentWritesProperty(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 7))
		nlegs := 2 + rng.IntN(3)
		r := newRig(t, rigOpts{legs: nlegs, size: 32 << 10, rs: 1024, sync: dirtylog.NoSync, disk: rng.IntN(2) == 0,
			noFaulty: true, opts: Options{ClearDelay: time.Duration(rng.IntN(2)-1) * time.Millisecond}})
		var wg sync.WaitGroup
		for g := range 8 {
			wseed := rng.Uint64()
			wg.Add(1)
			go func() {
				defer wg.Done()
				wr := rand.New(rand.NewPCG(wseed, 1))
				for range 40 {
					n := 1 + wr.IntN(3000)
					off := wr.Int64N(32<<10 - int64(n))
					if _, err := r.m.WriteAt(fill(n, byte(g*31+wr.IntN(200))), off); err != nil {
						t.Error(err)
					}
				}
			}()
		}
		wg.Wait()
		r.legsIdentical(t)
		if t.Failed() {
			t.Fatalf("seed %d", seed)
		}
	}
}

func TestCloseStopsGoroutines(t *testing.T) {
	base := runtime.NumGoroutine()
	for range 5 {
		r := newRig(t, rigOpts{disk: true, opts: Options{ResyncRate: 1 << 20, ResyncParallel: 3}})
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := range 20 {
					_, _ = r.m.WriteAt(fill(700, byte(g)), int64(k*1000+g*100))
				}
			}()
		}
		wg.Wait()
		// Close in the middle of a rate-limited resync.
		if err := r.m.Close(); err != nil {
			t.Fatal(err)
		}
		if err := r.m.Close(); !errors.Is(err, ErrClosed) {
			t.Fatalf("second Close = %v", err)
		}
		if _, err := r.m.WriteAt([]byte{1}, 0); !errors.Is(err, ErrClosed) {
			t.Fatalf("write after Close = %v", err)
		}
	}
	checkNoLeak(t, base)
}

func TestResyncProgressAndRate(t *testing.T) {
	var mu sync.Mutex
	var ps []Progress
	size := int64(256 << 10)
	r := newRig(t, rigOpts{size: size, rs: 16 << 10, opts: Options{ResyncRate: 2 << 20, ResyncParallel: 2,
		OnProgress: func(p Progress) { mu.Lock(); ps = append(ps, p); mu.Unlock() }}})
	start := time.Now()
	r.waitSync(t)
	el := time.Since(start)
	// 256 KiB at 2 MiB/s takes at least ~125 ms (the first chunk is free).
	if el < 100*time.Millisecond {
		t.Fatalf("resync of 256 KiB at 2 MiB/s took %v", el)
	}
	waitFor(t, "final progress", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(ps) > 0 && ps[len(ps)-1].Done
	})
	mu.Lock()
	defer mu.Unlock()
	sawETA := false
	for i, p := range ps {
		if p.Total != 16 || p.InSync > p.Total {
			t.Fatalf("progress %d: %+v", i, p)
		}
		if i > 0 && p.InSync < ps[i-1].InSync {
			t.Fatalf("progress went backwards: %+v then %+v", ps[i-1], p)
		}
		if !p.Done && p.ETA > 0 && p.BytesPerSec > 0 {
			sawETA = true
		}
	}
	if !sawETA {
		t.Fatal("no progress report had a rate and an ETA")
	}
	r.legsIdentical(t)
}

func TestVerifyAndRepair(t *testing.T) {
	r := newRig(t, rigOpts{sync: dirtylog.NoSync, disk: true})
	if _, err := r.m.WriteAt(fill(64<<10, 'v'), 0); err != nil {
		t.Fatal(err)
	}
	res, err := r.m.Verify(context.Background(), false)
	if err != nil || len(res.Mismatched) != 0 || res.Checked != 16 {
		t.Fatalf("Verify = %+v, %v", res, err)
	}
	// Silent corruption on leg 1 in regions 2 and 9.
	_, _ = r.legs[1].WriteAt([]byte("rot"), 2*4096+5)
	_, _ = r.legs[1].WriteAt([]byte("rot"), 9*4096+4000)
	res, err = r.m.Verify(context.Background(), true)
	if err != nil || len(res.Mismatched) != 2 || res.Mismatched[0] != 2 || res.Mismatched[1] != 9 || !res.Repaired {
		t.Fatalf("Verify = %+v, %v", res, err)
	}
	r.waitSync(t)
	r.legsIdentical(t)
	res, _ = r.m.Verify(context.Background(), false)
	if len(res.Mismatched) != 0 {
		t.Fatalf("after repair: %+v", res)
	}
}

func TestAddAndReplaceLeg(t *testing.T) {
	var events []Event
	var mu sync.Mutex
	r := newRig(t, rigOpts{sync: dirtylog.NoSync, opts: Options{HandleErrors: true, ReadPolicy: RoundRobin, ResyncParallel: 1,
		OnEvent: func(e Event) { mu.Lock(); events = append(events, e); mu.Unlock() }}})
	if _, err := r.m.WriteAt(fill(64<<10, 'a'), 0); err != nil {
		t.Fatal(err)
	}
	// The new leg holds the join copy (whole-region writes) until released
	// and records any read.
	nl := &joinGateLeg{Memory: testdev.NewMemory(64 << 10), gate: make(chan struct{}), regionSize: 4096}
	// The gate opens on any exit, so a failing check fails at once
	// instead of leaving the rig's Close waiting for the held join copy.
	var gateOnce sync.Once
	openGate := func() { gateOnce.Do(func() { close(nl.gate) }) }
	t.Cleanup(openGate) // runs before the rig's Close (cleanups run last-in first-out)
	if err := r.m.AddLeg(nl); err != nil {
		t.Fatal(err)
	}
	if s := r.m.Stats(); len(s.Legs) != 3 || !s.Legs[2].Joining {
		t.Fatalf("stats after AddLeg: %+v", s.Legs)
	}
	// New writes reach the joining leg at once (region 15: the held join
	// copy works on region 0); reads never touch it.
	const woff = 15*4096 + 50
	if _, err := r.m.WriteAt(fill(100, 'b'), woff); err != nil {
		t.Fatal(err)
	}
	if got := nl.Bytes()[woff : woff+100]; !bytes.Equal(got, fill(100, 'b')) {
		t.Fatal("joining leg did not receive a write")
	}
	buf := make([]byte, 4096)
	for range 6 {
		if _, err := r.m.ReadAt(buf, 0); err != nil {
			t.Fatal(err)
		}
	}
	if nl.reads.Load() != 0 {
		t.Fatalf("a joining leg served %d reads", nl.reads.Load())
	}
	if s := r.m.Stats(); !s.Legs[2].Joining {
		t.Fatal("leg joined before its copy was released")
	}
	openGate()
	waitFor(t, "leg to join", func() bool { return !r.m.Stats().Legs[2].Joining })
	if !bytes.Equal(nl.Bytes(), r.legs[0].Bytes()) {
		t.Fatal("joined leg differs")
	}
	if got := r.m.Status(); got != "3 leg0 leg1 leg2 16/16 1 AAA 1 core" {
		t.Fatalf("status %q", got)
	}

	// Leg 1 dies; with handle_errors the write is held until the leg is
	// replaced.
	r.faulty[1].Add(testdev.Rule{Label: "dead", Op: testdev.OpAny})
	done := make(chan error, 1)
	held := r.m.Stats().HeldWrites
	go func() { _, err := r.m.WriteAt(fill(10, 'c'), 4096*3); done <- err }()
	// Deterministic: the write counts itself held just before it blocks,
	// and only ReplaceLeg or Close can release it.
	waitFor(t, "the write to be held", func() bool { return r.m.Stats().HeldWrites > held })
	select {
	case err := <-done:
		t.Fatalf("write after leg failure with handle_errors completed: %v", err)
	default:
	}
	if got := r.m.Status(); got != "3 leg0 leg1 leg2 15/16 1 ADA 1 core" {
		t.Fatalf("status %q", got)
	}
	repl := testdev.NewMemory(64 << 10)
	if err := r.m.ReplaceLeg(1, repl); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("held write after ReplaceLeg: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("ReplaceLeg did not release the held write")
	}
	r.waitSync(t)
	if !bytes.Equal(repl.Bytes(), r.legs[0].Bytes()) {
		t.Fatal("replacement leg differs")
	}
	if got := r.m.Status(); got != "3 leg0 leg1 leg2 16/16 1 AAA 1 core" {
		t.Fatalf("status %q", got)
	}
	mu.Lock()
	defer mu.Unlock()
	var kinds []EventKind
	for _, e := range events {
		kinds = append(kinds, e.Kind)
	}
	want := map[EventKind]bool{EventLegJoined: false, EventLegFailed: false, EventInSync: false}
	for _, k := range kinds {
		if _, ok := want[k]; ok {
			want[k] = true
		}
	}
	for k, seen := range want {
		if !seen {
			t.Errorf("no %s event in %v", k, kinds)
		}
	}
	if err := r.m.ReplaceLeg(7, repl); !errors.Is(err, ErrBadLeg) {
		t.Fatalf("ReplaceLeg(7) = %v", err)
	}
}

// joinGateLeg blocks whole-region writes (the join copy) until gate is
// closed, and counts reads.
type joinGateLeg struct {
	*testdev.Memory
	gate       chan struct{}
	regionSize int
	reads      atomic.Int64
}

func (l *joinGateLeg) WriteAt(p []byte, off int64) (int, error) {
	if len(p) == l.regionSize {
		<-l.gate
	}
	return l.Memory.WriteAt(p, off)
}

func (l *joinGateLeg) ReadAt(p []byte, off int64) (int, error) {
	l.reads.Add(1)
	return l.Memory.ReadAt(p, off)
}
