package mirror

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dmlog/dmlog/dirtylog"
	"github.com/dmlog/dmlog/dirtylog/testdev"
)

// oneAtATimeLog is a log that allows one recovery at a time, as the
// clustered logs do (dirtylog.Log.ResyncWork): until SetRegionSync ends it,
// ResyncWork returns the unfinished region again. It counts hand-outs
// (distinct claims per region, and repeats of the unfinished one); the
// test checks with Stats that no region was copied twice.
type oneAtATimeLog struct {
	dirtylog.Log // an interface field: Core's Local() is not promoted

	mu       sync.Mutex
	held     bool
	claim    dirtylog.Region
	handed   map[dirtylog.Region]int // distinct claims per region
	repeated int                     // the unfinished region returned again
}

func (l *oneAtATimeLog) ResyncWork(ctx context.Context) (dirtylog.Region, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held {
		l.repeated++
		return l.claim, true, nil
	}
	r, ok, err := l.Log.ResyncWork(ctx)
	if ok {
		l.held, l.claim = true, r
		l.handed[r]++
	}
	return r, ok, err
}

func (l *oneAtATimeLog) SetRegionSync(r dirtylog.Region, in bool) {
	l.mu.Lock()
	if l.held && l.claim == r {
		l.held = false
	}
	l.mu.Unlock()
	l.Log.SetRegionSync(r, in)
}

// TestResyncWithOneRecoveryAtATime: over a log that hands its recoverer
// the unfinished region again, the mirror (asking with ResyncParallel 4,
// from the background worker and from Resync at once) copies every region
// exactly once and ends with identical legs.
func TestResyncWithOneRecoveryAtATime(t *testing.T) {
	const size, rs = 256 << 10, 8 << 10
	core, err := dirtylog.NewCore(dirtylog.Options{RegionSize: rs, DeviceSize: size, Sync: dirtylog.ForceSync})
	if err != nil {
		t.Fatal(err)
	}
	log := &oneAtATimeLog{Log: core, handed: map[dirtylog.Region]int{}}
	l0, l1 := testdev.NewMemory(size), testdev.NewMemory(size)
	_, _ = l0.WriteAt(fill(size, 'a'), 0)
	_, _ = l1.WriteAt(fill(size, 'z'), 0)
	m, err := New([]Leg{l0, l1}, log, Options{Size: size, ResyncParallel: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.Resync(ctx); err != nil {
		t.Fatalf("Resync: %v", err)
	}
	if err := m.WaitInSync(ctx); err != nil {
		t.Fatalf("WaitInSync: %v (status %s)", err, m.Status())
	}
	r := &rig{m: m, legs: []*testdev.Memory{l0, l1}}
	r.legsIdentical(t)

	log.mu.Lock()
	defer log.mu.Unlock()
	const regions = size / rs
	if len(log.handed) != regions {
		t.Fatalf("%d distinct regions handed out, want %d", len(log.handed), regions)
	}
	for reg, n := range log.handed {
		if n != 1 {
			t.Errorf("region %d claimed %d times", reg, n)
		}
	}
	if got := m.Stats().ResyncedRegions; got != regions {
		t.Errorf("ResyncedRegions = %d, want %d (a region copied twice or not at all)", got, regions)
	}
	if log.repeated == 0 {
		t.Error("the mirror never asked while its one recovery ran: the test did not exercise the repeat")
	}
}

// slowWorkLog blocks its second ResyncWork until release is closed, as a
// clustered log's would behind a partition.
type slowWorkLog struct {
	dirtylog.Log
	calls   atomic.Int32
	blocked chan struct{} // closed when the second call blocks
	release chan struct{}
}

func (l *slowWorkLog) ResyncWork(ctx context.Context) (dirtylog.Region, bool, error) {
	if l.calls.Add(1) == 2 {
		close(l.blocked)
		select {
		case <-l.release:
		case <-time.After(10 * time.Second):
		}
	}
	return l.Log.ResyncWork(ctx)
}

// A recovery that ends while a ResyncWork call is slow must not hold up
// the mirror's writes: the outcome reaches the log outside the mirror's
// lock.
func TestSlowResyncWorkDoesNotStallWrites(t *testing.T) {
	const size, rs = 64 << 10, 4 << 10
	core, err := dirtylog.NewCore(dirtylog.Options{RegionSize: rs, DeviceSize: size, Sync: dirtylog.NoSync})
	if err != nil {
		t.Fatal(err)
	}
	core.SetRegionSync(0, false) // resync work: regions 0 and 1
	core.SetRegionSync(1, false)
	log := &slowWorkLog{Log: core, blocked: make(chan struct{}), release: make(chan struct{})}
	m, err := New([]Leg{testdev.NewMemory(size), testdev.NewMemory(size)}, log, Options{Size: size, ResyncParallel: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	defer close(log.release)
	<-log.blocked
	// Region 0's copy (4 KiB) ends meanwhile and waits for the slow call
	// to record its outcome: it is counted just before it does (read
	// without the mirror's lock, which a regression would hold).
	deadline := time.Now().Add(10 * time.Second)
	for m.stats.resyncedRegions.Load() < 1 {
		if time.Now().After(deadline) {
			t.Fatal("region 0 was never copied")
		}
		time.Sleep(time.Millisecond) // polling a counter: there is nothing to wait on
	}
	// Region 9 is in sync and clean: the write marks it and waits for a
	// log flush, which needs the mirror's lock.
	done := make(chan error, 1)
	go func() {
		_, err := m.WriteAt(fill(4096, 'w'), 9*rs)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("a write still waited after 2 s while a ResyncWork call was slow")
	}
}
