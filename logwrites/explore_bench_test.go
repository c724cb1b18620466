package logwrites

import (
	"bytes"
	"context"
	"math/rand/v2"
	"testing"
	"time"
)

const (
	xbenchDev     = 64 << 20 // device size
	xbenchEntries = 10000
)

// xbenchLog is a 10,000-entry log over a 64 MiB device: 4 KiB writes at
// random aligned offsets within the first span bytes, a flush after every
// 8 writes on average, one write in 16 FUA, and a mark now and then.
func xbenchLog(b *testing.B, span int) *Log {
	r := rand.New(rand.NewPCG(42, 42))
	x := newHandLog(512)
	for x.n < xbenchEntries {
		switch k := r.IntN(64); {
		case k < 7:
			x.flush(FlagFlush)
		case k < 11:
			x.write(uint64(r.IntN(span/4096))*8, FlagFUA, xdata(byte(x.n), 8))
		case k < 12:
			x.mark("m")
		default:
			x.write(uint64(r.IntN(span/4096))*8, 0, xdata(byte(x.n), 8))
		}
	}
	l, err := Open(bytes.NewReader(x.bytes(-1)))
	if err != nil {
		b.Fatal(err)
	}
	return l
}

// BenchmarkExplore measures crash states checked per second with a trivial
// checker (one 4 KiB read), beside the plain way of producing the same
// prefix states: copying the base image and replaying the prefix from
// scratch for each one (timed on a sample of prefixes in the same run).
// The "hot" variant confines the writes to the first 64 KiB (16 slots of
// 4 KiB), so that non-durable writes often lie under later FUA writes and
// the masking that keeps them off the FUA writes' blocks is exercised.
//
//	go test -run '^$' -bench BenchmarkExplore -benchtime 3x ./logwrites
func BenchmarkExplore(b *testing.B) {
	l, hot := xbenchLog(b, xbenchDev), xbenchLog(b, 64<<10)
	base := make([]byte, xbenchDev)
	check := func(ctx context.Context, s State) error {
		var p [4096]byte
		_, err := s.ReadAt(p[:], 1<<20)
		return err
	}
	// Baseline: each prefix state from scratch (copy base, replay prefix).
	var cuts []uint64
	for e, err := range l.Entries() {
		if err != nil {
			b.Fatal(err)
		}
		if e.Flags&(FlagFlush|FlagFUA) != 0 {
			cuts = append(cuts, e.Index+1)
		}
	}
	const samples = 8
	target := &memDev{b: make([]byte, xbenchDev)}
	start := time.Now()
	for i := range samples {
		cut := cuts[(len(cuts)-1)*i/(samples-1)]
		copy(target.b, base)
		if err := Replay(l, target, ReplayOptions{Limit: cut}); err != nil {
			b.Fatal(err)
		}
	}
	replayPerState := time.Since(start).Seconds() / samples

	for _, tc := range []struct {
		name string
		o    ExploreOptions
		l    *Log
	}{
		{"prefix", ExploreOptions{MaxSubsetStates: -1}, l},
		{"subsets", ExploreOptions{}, l},
		{"subsets+tear", ExploreOptions{Tear: true}, l},
		{"hot/subsets+tear", ExploreOptions{Tear: true}, hot},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var states int
			start := time.Now()
			for b.Loop() {
				st, err := Explore(context.Background(), tc.l, bytes.NewReader(base), tc.o, check)
				if err != nil {
					b.Fatal(err)
				}
				states += st.States
			}
			perSec := float64(states) / time.Since(start).Seconds()
			b.ReportMetric(perSec, "states/s")
			b.ReportMetric(1/replayPerState, "replay-states/s")
			b.ReportMetric(perSec*replayPerState, "x-vs-replay")
			b.ReportMetric(float64(states)/float64(b.N), "states/op")
		})
	}
}
