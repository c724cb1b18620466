package mirror

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dmlog/dmlog/dirtylog"
	"github.com/dmlog/dmlog/dirtylog/testdev"
)

type eventLog struct {
	mu sync.Mutex
	ev []Event
}

func (l *eventLog) add(e Event) { l.mu.Lock(); l.ev = append(l.ev, e); l.mu.Unlock() }

func (l *eventLog) count(k EventKind) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, e := range l.ev {
		if e.Kind == k {
			n++
		}
	}
	return n
}

func TestLegWriteErrorKernelSemantics(t *testing.T) {
	var ev eventLog
	r := newRig(t, rigOpts{sync: dirtylog.NoSync, disk: true, opts: Options{ResyncRetry: 5 * time.Millisecond, OnEvent: ev.add}})
	r.faulty[1].Add(testdev.Rule{Label: "eio", Op: testdev.OpWrite, Off: 8192, Len: 4096})
	p := fill(4096, 'e')
	// Without handle_errors the write succeeds on the healthy leg.
	if _, err := r.m.WriteAt(p, 8192); err != nil {
		t.Fatalf("write with one failing leg: %v", err)
	}
	if got := r.m.Status(); got != "2 leg0 leg1 15/16 1 AD 3 disk log A" {
		t.Fatalf("status %q", got)
	}
	// Reported with or without HandleErrors: once for the write error (and
	// once more if a resync copy to leg 1 failed before this check).
	if n := ev.count(EventLegFailed); n < 1 || n > 2 {
		t.Fatalf("%d leg-failed events, want 1 or 2", n)
	}
	// The region is read from the default leg only.
	got := make([]byte, 4096)
	if _, err := r.m.ReadAt(got, 8192); err != nil || !bytes.Equal(got, p) {
		t.Fatalf("read back: %v", err)
	}
	// Resync keeps failing but does not spin.
	time.Sleep(60 * time.Millisecond)
	if n := r.faulty[1].Count(testdev.OpWrite); n > 20 {
		t.Fatalf("%d write attempts on the failing leg in 60 ms: resync is hot-looping", n)
	}
	if s := r.m.Stats(); s.ResyncFailures == 0 {
		t.Fatal("no resync attempt failed")
	}
	// The leg heals: the resync copies the region, full sync resets the
	// error state (as the kernel does) and raises one in-sync event.
	r.faulty[1].Clear()
	r.waitSync(t)
	waitFor(t, "status AA", func() bool { return r.m.Status() == "2 leg0 leg1 16/16 1 AA 3 disk log A" })
	r.legsIdentical(t)
	// The event is raised after the mirror's lock is dropped, so it may
	// come just after the status shows the mirror in sync.
	waitFor(t, "the in-sync event", func() bool { return ev.count(EventInSync) >= 1 })
	if ev.count(EventInSync) != 1 {
		t.Fatalf("%d in-sync events", ev.count(EventInSync))
	}
}

// Without HandleErrors too, a failed default leg hands over to a healthy
// leg while the mirror is in sync: the writes that reached leg 1 are
// acknowledged and read back from it.
func TestDefaultLegFailsWithoutHandleErrors(t *testing.T) {
	var ev eventLog
	r := newRig(t, rigOpts{sync: dirtylog.NoSync, opts: Options{OnEvent: ev.add}})
	r.faulty[0].Add(testdev.Rule{Label: "dead", Op: testdev.OpWrite})
	for i := range 4 {
		if _, err := r.m.WriteAt(fill(4096, byte('a'+i)), int64(i)*4096); err != nil {
			t.Fatalf("write %d with a failed default leg: %v", i, err)
		}
	}
	for i := range 4 {
		got := make([]byte, 4096)
		if _, err := r.m.ReadAt(got, int64(i)*4096); err != nil || !bytes.Equal(got, fill(4096, byte('a'+i))) {
			t.Fatalf("read %d back: %v", i, err)
		}
	}
	// One event per kind of error (the resync's copies to leg 0 fail too).
	ev.mu.Lock()
	for _, e := range ev.ev {
		if e.Kind == EventLegFailed && e.Leg != 0 {
			t.Errorf("leg %d reported failed", e.Leg)
		}
	}
	ev.mu.Unlock()
	if ev.count(EventLegFailed) == 0 || ev.count(EventDefaultChanged) != 1 {
		t.Fatalf("events %+v", ev.ev)
	}
	if s := r.m.Stats(); s.Health != "DA" {
		t.Fatalf("health %s, want DA", s.Health)
	}
}

// Out of sync, the default leg is the only one with every region's data:
// it stays the default when it fails, and a write it did not take fails.
func TestDefaultLegFailsOutOfSync(t *testing.T) {
	r := newRig(t, rigOpts{opts: Options{NoResync: true}}) // core: all out of sync
	r.faulty[0].Add(testdev.Rule{Label: "dead", Op: testdev.OpWrite})
	n, err := r.m.WriteAt(fill(4096, 'x'), 0)
	if !errors.Is(err, ErrIO) || n != 0 {
		t.Fatalf("WriteAt = %d, %v; want ErrIO", n, err)
	}
	if !strings.Contains(err.Error(), "leg0") {
		t.Fatalf("error %q does not name the failed leg", err)
	}
}

func TestAllLegsFailWrite(t *testing.T) {
	r := newRig(t, rigOpts{sync: dirtylog.NoSync})
	for _, f := range r.faulty {
		f.Add(testdev.Rule{Label: "dead", Op: testdev.OpWrite})
	}
	n, err := r.m.WriteAt(fill(100, 'z'), 0)
	if !errors.Is(err, ErrIO) || n != 0 {
		t.Fatalf("WriteAt with every leg failing = %d, %v", n, err)
	}
	if got := r.m.Status(); got != "2 leg0 leg1 15/16 1 DD 1 core" {
		t.Fatalf("status %q", got)
	}
}

func TestReadErrorRetryAndRepair(t *testing.T) {
	for _, repair := range []bool{false, true} {
		r := newRig(t, rigOpts{sync: dirtylog.NoSync, opts: Options{ReadPolicy: DefaultLeg, ReadRepair: repair}})
		p := fill(4096, 'r')
		if _, err := r.m.WriteAt(p, 4096); err != nil {
			t.Fatal(err)
		}
		_, _ = r.legs[0].WriteAt([]byte("bad!"), 4096) // leg 0's copy is also wrong
		r.faulty[0].Add(testdev.Rule{Label: "eio", Op: testdev.OpRead, Nth: 1})
		got := make([]byte, 4096)
		if _, err := r.m.ReadAt(got, 4096); err != nil || !bytes.Equal(got, p) {
			t.Fatalf("repair=%v: read with a failing leg: %v", repair, err)
		}
		s := r.m.Stats()
		if repair {
			if s.Health != "AA" || s.ReadRepairs != 1 {
				t.Fatalf("repair: health %s repairs %d", s.Health, s.ReadRepairs)
			}
			r.legsIdentical(t) // the bad range was rewritten
		} else if s.Health != "RA" {
			t.Fatalf("health %s, want RA", s.Health)
		}
	}
}

func TestOutOfSyncReadNeedsDefaultLeg(t *testing.T) {
	r := newRig(t, rigOpts{opts: Options{NoResync: true}}) // core: all out of sync
	r.faulty[0].Add(testdev.Rule{Label: "eio", Op: testdev.OpRead})
	if _, err := r.m.ReadAt(make([]byte, 10), 0); !errors.Is(err, ErrIO) {
		t.Fatalf("read of out-of-sync region with failing default leg = %v", err)
	}
	if _, err := r.m.ReadAt(make([]byte, 10), 0); !errors.Is(err, ErrIO) {
		t.Fatalf("second read = %v", err)
	}
}

func TestLegSyncFailure(t *testing.T) {
	r := newRig(t, rigOpts{sync: dirtylog.NoSync})
	r.faulty[1].Add(testdev.Rule{Label: "flush", Op: testdev.OpSync})
	if err := r.m.Sync(); err != nil {
		t.Fatalf("Sync with a failing non-default leg: %v", err)
	}
	if h := r.m.Stats().Health; h != "AF" {
		t.Fatalf("health %s, want AF", h)
	}
	r.faulty[0].Add(testdev.Rule{Label: "flush", Op: testdev.OpSync})
	if err := r.m.Sync(); !errors.Is(err, ErrIO) {
		t.Fatalf("Sync with failing default leg = %v", err)
	}
}

func TestLogFailure(t *testing.T) {
	for _, he := range []bool{false, true} {
		var ev eventLog
		r := newRig(t, rigOpts{sync: dirtylog.NoSync, disk: true, opts: Options{HandleErrors: he, OnEvent: ev.add}})
		r.logF.Add(testdev.Rule{Label: "log eio", Op: testdev.OpWrite, Nth: 1})
		before := r.legs[0].Bytes()
		if _, err := r.m.WriteAt(fill(100, 'l'), 0); !errors.Is(err, ErrLogFailed) {
			t.Fatalf("handle_errors=%v: write with failing log = %v", he, err)
		}
		if !bytes.Equal(before, r.legs[0].Bytes()) || !bytes.Equal(before, r.legs[1].Bytes()) {
			t.Fatal("a write whose mark failed reached a leg")
		}
		if got := r.m.Status(); got != "2 leg0 leg1 16/16 1 AA 3 disk log D" {
			t.Fatalf("status %q", got)
		}
		if ev.count(EventLogFailed) != 1 {
			t.Fatalf("%d log-failed events", ev.count(EventLogFailed))
		}
		// The log heals (Nth: 1). With handle_errors the kernel issues no
		// more writes after a log failure; without, they proceed.
		_, err := r.m.WriteAt(fill(100, 'm'), 4096)
		if he != errors.Is(err, ErrLogFailed) {
			t.Fatalf("handle_errors=%v: write after log failure = %v", he, err)
		}
		if !r.m.Stats().LogFailed {
			t.Fatal("log_failure not sticky")
		}
	}
	// A failed log device sync shows F.
	r := newRig(t, rigOpts{sync: dirtylog.NoSync, disk: true})
	r.logF.Add(testdev.Rule{Label: "log flush", Op: testdev.OpSync, Nth: 1})
	if _, err := r.m.WriteAt(fill(100, 'l'), 0); !errors.Is(err, ErrLogFailed) {
		t.Fatalf("write with failing log sync = %v", err)
	}
	if got := r.m.Status(); got != "2 leg0 leg1 16/16 1 AA 3 disk log F" {
		t.Fatalf("status %q", got)
	}
}

func TestDefaultLegHandover(t *testing.T) {
	var ev eventLog
	r := newRig(t, rigOpts{sync: dirtylog.NoSync, opts: Options{HandleErrors: true, KeepLog: true, OnEvent: ev.add}})
	p := fill(4096, 'h')
	if _, err := r.m.WriteAt(p, 0); err != nil {
		t.Fatal(err)
	}
	r.faulty[0].Add(testdev.Rule{Label: "dead", Op: testdev.OpAny})
	// keep_log: the write that fails on leg 0 completes.
	if _, err := r.m.WriteAt(p, 4096); err != nil {
		t.Fatalf("write with keep_log: %v", err)
	}
	s := r.m.Stats()
	if !s.Legs[1].Default || ev.count(EventDefaultChanged) != 1 || ev.count(EventLegFailed) < 1 {
		t.Fatalf("no handover: %+v events %v", s.Legs, ev.ev)
	}
	got := make([]byte, 4096)
	for _, off := range []int64{0, 4096} { // in sync and out of sync
		if _, err := r.m.ReadAt(got, off); err != nil || !bytes.Equal(got, p) {
			t.Fatalf("read at %d after handover: %v", off, err)
		}
	}
	if got := r.m.Table(); got != "core 2 8 nosync 2 leg0 0 leg1 0 2 handle_errors keep_log" {
		t.Fatalf("table %q", got)
	}
}

// remoteish is a log that behaves like a remote one: InSync would block
// when asked not to, and RemoteRecovering is true for a while.
type remoteish struct {
	dirtylog.Log
	recovering   atomic.Int64 // answers of "true" left
	rrCalls      atomic.Int64
	blockingSync atomic.Int64
}

func (l *remoteish) InSync(ctx context.Context, r dirtylog.Region) (bool, error) {
	if !dirtylog.MayBlock(ctx) {
		return false, dirtylog.ErrWouldBlock
	}
	l.blockingSync.Add(1)
	return l.Log.InSync(ctx, r)
}

func (l *remoteish) RemoteRecovering(ctx context.Context, r dirtylog.Region) (bool, error) {
	l.rrCalls.Add(1)
	if l.recovering.Add(-1) >= 0 {
		return true, nil
	}
	return false, nil
}

func TestRemoteLogPaths(t *testing.T) {
	core, err := dirtylog.NewCore(dirtylog.Options{RegionSize: 4096, DeviceSize: 64 << 10, Sync: dirtylog.NoSync})
	if err != nil {
		t.Fatal(err)
	}
	log := &remoteish{Log: core}
	log.recovering.Store(2)
	l0, l1 := testdev.NewMemory(64<<10), testdev.NewMemory(64<<10)
	m, err := New([]Leg{l0, l1}, log, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	p := fill(5000, 'q')
	if _, err := m.WriteAt(p, 1000); err != nil {
		t.Fatal(err)
	}
	if log.rrCalls.Load() < 3 {
		t.Fatalf("RemoteRecovering asked %d times; the write did not wait for the other node", log.rrCalls.Load())
	}
	if log.blockingSync.Load() == 0 {
		t.Fatal("a would-block InSync was not asked again with blocking allowed")
	}
	if !bytes.Equal(l0.Bytes(), l1.Bytes()) {
		t.Fatal("legs differ")
	}
	got := make([]byte, len(p))
	if _, err := m.ReadAt(got, 1000); err != nil || !bytes.Equal(got, p) {
		t.Fatalf("read: %v", err)
	}
}
