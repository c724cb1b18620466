package mirror

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/dmlog/dmlog/dirtylog"
	"github.com/dmlog/dmlog/dirtylog/testdev"
)

// plainLeg hides a device's Sync and Discard: a leg that can only read
// and write.
type plainLeg struct {
	io.ReaderAt
	io.WriterAt
}

// discardRig builds a mirror over in-memory legs; canDiscard[i] says
// whether leg i offers Discard. Every leg goes through a Faulty so that
// rules can fail its discards.
func discardRig(t *testing.T, canDiscard []bool, o Options) (*Mirror, []*testdev.Memory, []*testdev.Faulty) {
	t.Helper()
	const size, rs = 64 << 10, 4 << 10
	var legs []Leg
	var mems []*testdev.Memory
	var fs []*testdev.Faulty
	for _, d := range canDiscard {
		mem := testdev.NewMemory(size)
		f := testdev.NewFaulty(mem)
		mems, fs = append(mems, mem), append(fs, f)
		if d {
			legs = append(legs, f)
		} else {
			legs = append(legs, plainLeg{f, f})
		}
	}
	log, err := dirtylog.NewCore(dirtylog.Options{RegionSize: rs, DeviceSize: size, Sync: dirtylog.NoSync})
	if err != nil {
		t.Fatal(err)
	}
	o.Size = size
	m, err := New(legs, log, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m, mems, fs
}

func requireIdentical(t *testing.T, mems []*testdev.Memory) {
	t.Helper()
	b0 := mems[0].Bytes()
	for i := 1; i < len(mems); i++ {
		if bi := mems[i].Bytes(); !bytes.Equal(b0, bi) {
			t.Fatalf("leg %d differs from leg 0 at byte %d", i, firstDiff(b0, bi))
		}
	}
}

func TestDiscard(t *testing.T) {
	for _, tc := range []struct {
		name string
		can  []bool
	}{
		{"all legs discard", []bool{true, true}},
		{"no leg discards", []bool{false, false}},
		{"mixed", []bool{true, false, true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, mems, _ := discardRig(t, tc.can, Options{ClearDelay: time.Hour, NoResync: true})
			data := fill(int(m.Size()), 1)
			if _, err := m.WriteAt(data, 0); err != nil {
				t.Fatal(err)
			}
			// 6 KiB from 3 KiB: crosses the boundary of regions 0, 1 and 2.
			const off, n = 3 << 10, 6 << 10
			if err := m.Discard(off, n); err != nil {
				t.Fatal(err)
			}
			requireIdentical(t, mems)
			want := append([]byte(nil), data...)
			clear(want[off : off+n])
			got := make([]byte, len(want))
			if _, err := m.ReadAt(got, 0); err != nil {
				t.Fatal(err)
			}
			if i := firstDiff(got, want); i < len(want) {
				t.Fatalf("after Discard, byte %d reads %d, want %d", i, got[i], want[i])
			}
			for i, mem := range mems {
				gotCalls := mem.Stats().Discards > 0
				if gotCalls != tc.can[i] {
					t.Errorf("leg %d: Discard called %v, leg can discard %v", i, gotCalls, tc.can[i])
				}
			}
			s := m.Stats()
			if s.Discards != 1 || s.BytesDiscarded != n || s.DiscardFallbacks != 0 {
				t.Errorf("Stats: Discards %d BytesDiscarded %d DiscardFallbacks %d, want 1 %d 0",
					s.Discards, s.BytesDiscarded, s.DiscardFallbacks, n)
			}
		})
	}
}

func TestDiscardMarksRegions(t *testing.T) {
	m, _, _ := discardRig(t, []bool{true, true}, Options{ClearDelay: time.Hour, NoResync: true})
	if err := m.Discard(5<<10, 4<<10); err != nil { // regions 1 and 2
		t.Fatal(err)
	}
	if got := m.Stats().DirtyRegions; got != 2 {
		t.Fatalf("DirtyRegions = %d after a discard over 2 regions, want 2", got)
	}
}

func TestDiscardRange(t *testing.T) {
	m, _, _ := discardRig(t, []bool{true, true}, Options{NoResync: true})
	for _, c := range [][2]int64{{-1, 1}, {0, m.Size() + 1}, {m.Size(), 1}, {0, -1}} {
		if err := m.Discard(c[0], c[1]); !errors.Is(err, ErrRange) {
			t.Errorf("Discard(%d, %d) = %v, want ErrRange", c[0], c[1], err)
		}
	}
	if err := m.Discard(m.Size(), 0); err != nil {
		t.Errorf("empty Discard at the end: %v", err)
	}
}

// A leg whose Discard fails gets zeroes written instead and is not failed
// (the kernel reports a failed discard as "not supported").
func TestDiscardFailureDoesNotFailLeg(t *testing.T) {
	m, mems, fs := discardRig(t, []bool{true, true}, Options{NoResync: true})
	if _, err := m.WriteAt(fill(int(m.Size()), 3), 0); err != nil {
		t.Fatal(err)
	}
	fs[1].Add(testdev.Rule{Label: "discard", Op: testdev.OpDiscard})
	if err := m.Discard(0, 8<<10); err != nil {
		t.Fatal(err)
	}
	requireIdentical(t, mems)
	if z := mems[1].Bytes()[:8<<10]; !bytes.Equal(z, make([]byte, len(z))) {
		t.Fatal("leg 1 was not zeroed after its discard failed")
	}
	s := m.Stats()
	if s.Health != "AA" || s.DiscardFallbacks != 1 {
		t.Fatalf("health %q fallbacks %d, want AA and 1", s.Health, s.DiscardFallbacks)
	}

	// The zero write failing too is a write error: the leg fails.
	fs[1].Add(testdev.Rule{Label: "write", Op: testdev.OpWrite})
	if err := m.Discard(8<<10, 4<<10); err != nil {
		t.Fatal(err) // leg 0 holds it
	}
	if h := m.Stats().Health; h != "AD" {
		t.Fatalf("health %q after a failed zero write, want AD", h)
	}
}

// Concurrent overlapping writes and discards reach every leg in one order,
// whether the legs discard or write zeroes.
func TestDiscardOverlappingWritesProperty(t *testing.T) {
	for seed := range uint64(20) {
		m, mems, _ := discardRig(t, []bool{true, false}, Options{NoResync: true})
		var wg sync.WaitGroup
		for g := range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(seed, uint64(g)))
				for range 40 {
					off := rng.Int64N(m.Size() - 1)
					n := 1 + rng.Int64N(min(12<<10, m.Size()-off))
					var err error
					if rng.IntN(3) == 0 {
						err = m.Discard(off, n)
					} else {
						_, err = m.WriteAt(fill(int(n), byte(g*40+1)), off)
					}
					if err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		b0, b1 := mems[0].Bytes(), mems[1].Bytes()
		if !bytes.Equal(b0, b1) {
			t.Fatalf("seed %d: legs differ at byte %d", seed, firstDiff(b0, b1))
		}
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
