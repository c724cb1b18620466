package mirror

import (
	"errors"
	"testing"
	"time"

	"github.com/dmlog/dmlog/dirtylog/testdev"
)

// rendezvousLeg's write waits until the other leg's write has started: it
// completes only if the mirror writes both legs at the same time.
type rendezvousLeg struct {
	*testdev.Memory
	mine, other chan struct{}
}

func (l *rendezvousLeg) WriteAt(p []byte, off int64) (int, error) {
	close(l.mine)
	select {
	case <-l.other:
	case <-time.After(5 * time.Second):
		return 0, errors.New("the other leg was not written in parallel")
	}
	return l.Memory.WriteAt(p, off)
}

// Legs whose writes are slow are written in parallel.
func TestSlowLegsWrittenInParallel(t *testing.T) {
	const size, rs = 64 << 10, 4 << 10
	a, b := make(chan struct{}), make(chan struct{})
	legs := []Leg{&rendezvousLeg{testdev.NewMemory(size), a, b}, &rendezvousLeg{testdev.NewMemory(size), b, a}}
	m, err := New(legs, coreLog(t, size, rs), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for _, l := range m.cfg.Load().legs {
		l.writeNanos.Store(int64(time.Millisecond)) // as measured on a slow device
	}
	if _, err := m.WriteAt(fill(4096, 'p'), 0); err != nil {
		t.Fatalf("write to slow legs: %v", err)
	}
}

// slowLeg takes at least 100 µs per write.
type slowLeg struct{ *testdev.Memory }

func (l slowLeg) WriteAt(p []byte, off int64) (int, error) {
	time.Sleep(100 * time.Microsecond)
	return l.Memory.WriteAt(p, off)
}

// Write times are sampled: memory legs average under inlineLegNanos (so
// they are written inline), a slow leg over it.
func TestLegWriteTimesSampled(t *testing.T) {
	const size, rs = 64 << 10, 4 << 10
	legs := []Leg{testdev.NewMemory(size), slowLeg{testdev.NewMemory(size)}}
	m, err := New(legs, coreLog(t, size, rs), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for i := range 40 * sampleEvery {
		if _, err := m.WriteAt(fill(512, 'x'), int64(i%100)*512); err != nil {
			t.Fatal(err)
		}
	}
	c := m.cfg.Load()
	if fast, slow := c.legs[0].writeNanos.Load(), c.legs[1].writeNanos.Load(); slow < inlineLegNanos || fast >= slow {
		t.Fatalf("sampled write times: memory leg %d ns, slow leg %d ns; want the slow one >= %d ns", fast, slow, inlineLegNanos)
	}
}
