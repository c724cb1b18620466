package logwrites

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
)

// FuzzExplore feeds arbitrary log images to the state generator behind
// Explore: it must never panic,
// hang or allocate beyond the device size; it either fails with one of the
// package's sentinel errors or produces states that ReplayState rebuilds
// byte for byte.
//
//	go test -run '^$' -fuzz FuzzExplore -fuzztime 60s -fuzzminimizetime 50x ./logwrites
//
// (Minimizing each new input at the default 60 s would spend most of the
// time there, since one run explores a whole log.)
func FuzzExplore(f *testing.F) {
	f.Add(newHandLog(512).write(0, 0, xdata('a', 2)).write(3, FlagFUA, xdata('b', 1)).flush(FlagFlush).write(1, FlagFlush, xdata('c', 3)).discard(0, 4).mark("m").bytes(-1), uint8(0))
	f.Add(xrandomLog(1, 8, 16).bytes(-1), uint8(1))
	f.Add(newHandLog(4096).write(1, FlagFlush|FlagFUA, xdata('d', 8)).write(0, 0, xdata('e', 8)).bytes(-1), uint8(2))
	f.Add(newHandLog(512).discard(0, 1<<40).bytes(-1), uint8(3))
	// A plain write, then a FUA write over part of it, then another plain
	// write: the first may not land over the FUA write.
	f.Add(newHandLog(512).write(0, 0, xdata('p', 4)).write(1, FlagFUA, xdata('q', 2)).write(2, 0, xdata('r', 3)).bytes(-1), uint8(4))
	const size = 64 * 512
	f.Fuzz(func(t *testing.T, img []byte, seed uint8) {
		l, err := Open(bytes.NewReader(img))
		if err != nil {
			return
		}
		base := bytes.Repeat([]byte{seed}, size)
		o := ExploreOptions{MaxStates: 40, MaxSubsetStates: 8, Tear: seed&1 == 0, Seed: uint64(seed)}
		// The generator runs inline (Explore's goroutines would make the
		// coverage the fuzzer sees depend on scheduling).
		sh, err := newShape(bytes.NewReader(base), size)
		if err != nil {
			t.Fatal(err)
		}
		gen := &generator{log: l, sh: sh, o: o}
		var cerr error
		err = gen.run(context.Background(), func(s State) bool {
			got, err := s.Bytes()
			if err != nil {
				cerr = err
				return false
			}
			dev := &memDev{b: bytes.Clone(base)}
			if err := ReplayState(l, s.Description, dev); err != nil {
				cerr = err
				return false
			}
			if !bytes.Equal(got, dev.b) {
				cerr = fmt.Errorf("state %v differs from its replay", s.Description)
				return false
			}
			return true
		})
		if cerr != nil {
			t.Fatal(cerr)
		}
		if err == nil {
			return
		}
		for _, want := range []error{ErrMalformed, ErrTruncated, ErrDeviceSize} {
			if errors.Is(err, want) {
				return
			}
		}
		t.Fatalf("error wraps no sentinel: %v", err)
	})
}
