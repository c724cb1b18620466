package logwrites

import (
	"bytes"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/dmlog/dmlog/dirtylog/testdev"
	"github.com/stretchr/testify/require"
)

// le64 / le32 encode by hand (independently of encoding/binary and of the
// package's encoder).
func le64(v uint64) []byte {
	b := make([]byte, 8)
	for i := range b {
		b[i] = byte(v >> (8 * i))
	}
	return b
}

func le32(v uint32) []byte {
	return []byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)}
}

// handLog builds a log image by hand, one block at a time, encoding
// headers independently of the package's encoder.
type handLog struct {
	s     int
	count uint64
	body  []byte // blocks after the super
	n     uint64 // entries appended
}

func newHandLog(s int) *handLog { return &handLog{s: s} }

func (h *handLog) header(sector, nr uint64, flags Flags, dataLen uint64, name string) []byte {
	b := make([]byte, h.s)
	copy(b[0:], le64(sector))
	copy(b[8:], le64(nr))
	copy(b[16:], le64(uint64(flags)))
	copy(b[24:], le64(dataLen))
	copy(b[32:], name)
	return b
}

func (h *handLog) write(sector uint64, flags Flags, data []byte) *handLog {
	h.body = append(h.body, h.header(sector, uint64(len(data)/h.s), flags, 0, "")...)
	h.body = append(h.body, data...)
	h.n++
	return h
}

func (h *handLog) discard(sector, nr uint64) *handLog {
	h.body = append(h.body, h.header(sector, nr, FlagDiscard, 0, "")...)
	h.n++
	return h
}

func (h *handLog) flush(flags Flags) *handLog {
	h.body = append(h.body, h.header(0, 0, flags, 0, "")...)
	h.n++
	return h
}

func (h *handLog) mark(name string) *handLog {
	h.body = append(h.body, h.header(0, 0, FlagMark, uint64(len(name)), name)...)
	h.n++
	return h
}

func (h *handLog) raw(block []byte) *handLog {
	h.body = append(h.body, block...)
	h.n++
	return h
}

// bytes returns the image with nr_entries = count (or all entries if count < 0).
func (h *handLog) bytes(count int) []byte {
	super := make([]byte, h.s)
	copy(super, []byte{0x72, 0x68, 0x73, 0x77, 0x66, 0x73, 0x6a, 0x00})
	copy(super[8:], le64(1))
	c := h.n
	if count >= 0 {
		c = uint64(count)
	}
	copy(super[16:], le64(c))
	copy(super[24:], le32(uint32(h.s)))
	return append(super, h.body...)
}

// open opens the image with all its entries counted.
func (h *handLog) open(t testing.TB) *Log {
	t.Helper()
	return openBytes(t, h.bytes(-1))
}

func fill(n int, c byte) []byte { return bytes.Repeat([]byte{c}, n) }

func openBytes(t testing.TB, b []byte) *Log {
	t.Helper()
	l, err := Open(bytes.NewReader(b))
	require.NoError(t, err)
	return l
}

func allEntries(t testing.TB, l *Log) []Entry {
	t.Helper()
	var out []Entry
	for e, err := range l.Entries() {
		require.NoError(t, err)
		out = append(out, e)
	}
	return out
}

// entrySig is a compact description of an entry for ordering assertions.
type entrySig struct {
	Flags  Flags
	Sector uint64
	Nr     uint64
	Mark   string
}

func sigs(es []Entry) []entrySig {
	out := make([]entrySig, len(es))
	for i, e := range es {
		out[i] = entrySig{e.Flags, e.Sector, e.NrSectors, e.Mark}
	}
	return out
}

func W(sector, nr uint64) entrySig           { return entrySig{0, sector, nr, ""} }
func WF(f Flags, sector, nr uint64) entrySig { return entrySig{f, sector, nr, ""} }
func D(sector, nr uint64) entrySig           { return entrySig{FlagDiscard, sector, nr, ""} }
func M(name string) entrySig                 { return entrySig{FlagMark, 0, 0, name} }
func F() entrySig                            { return entrySig{FlagFlush, 0, 0, ""} }

// gated wraps a device so that a test decides when chosen writes and syncs
// complete: the test seam for completion order. A write at an offset
// registered with hold blocks until release(off); a sync blocks while
// syncGate is set, after signalling syncEntered.
type gated struct {
	testdev.Device
	mu          sync.Mutex
	holds       map[int64]chan struct{}
	started     map[int64]chan struct{}
	syncGate    chan struct{}
	syncEntered chan struct{}
}

func newGated(inner testdev.Device) *gated {
	return &gated{Device: inner, holds: map[int64]chan struct{}{}, started: map[int64]chan struct{}{}}
}

func (g *gated) hold(off int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.holds[off] = make(chan struct{})
	g.started[off] = make(chan struct{})
}

func (g *gated) release(off int64) {
	g.mu.Lock()
	c := g.holds[off]
	g.mu.Unlock()
	close(c)
}

// waitStarted waits until the held write at off reached the device.
func (g *gated) waitStarted(off int64) {
	g.mu.Lock()
	c := g.started[off]
	g.mu.Unlock()
	<-c
}

func (g *gated) holdSync() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.syncGate = make(chan struct{})
	g.syncEntered = make(chan struct{})
}

func (g *gated) WriteAt(p []byte, off int64) (int, error) {
	g.mu.Lock()
	c, s := g.holds[off], g.started[off]
	g.mu.Unlock()
	if c != nil {
		close(s)
		<-c
	}
	return g.Device.WriteAt(p, off)
}

func (g *gated) Sync() error {
	g.mu.Lock()
	gate, entered := g.syncGate, g.syncEntered
	g.syncGate, g.syncEntered = nil, nil
	g.mu.Unlock()
	if gate != nil {
		close(entered)
		<-gate
	}
	if s, ok := g.Device.(interface{ Sync() error }); ok {
		return s.Sync()
	}
	return nil
}

// allocated returns the bytes f allocates (runtime.MemStats.TotalAlloc),
// after a GC so that an earlier cycle's work does not count.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// recv receives from c on the test goroutine, failing the test (rather than
// hanging until the test binary's timeout) if nothing comes within 20 s.
func recv[T any](t testing.TB, c <-chan T) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(20 * time.Second):
		t.Fatal("nothing received in 20 s: the operation is stuck")
		panic("unreachable")
	}
}
