package logwrites

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
)

// FuzzExplore feeds arbitrary log images to Explore: it must never panic,
// hang or allocate beyond the device size; it either fails with one of the
// package's sentinel errors or produces states that ReplayState rebuilds
// byte for byte.
//
//	go test -run '^$' -fuzz FuzzExplore -fuzztime 30s ./logwrites
func FuzzExplore(f *testing.F) {
	f.Add(newXlog(512).w(0, 0, xdata('a', 2)).w(3, FlagFUA, xdata('b', 1)).flush().w(1, FlagFlush, xdata('c', 3)).discard(0, 4).mark("m").image(), uint8(0))
	f.Add(xrandomLog(1, 30, 60).image(), uint8(1))
	f.Add(newXlog(4096).w(1, FlagFlush|FlagFUA, xdata('d', 8)).w(0, 0, xdata('e', 8)).image(), uint8(2))
	f.Add(newXlog(512).discard(0, 1<<40).image(), uint8(3))
	const size = 64 * 512
	f.Fuzz(func(t *testing.T, img []byte, seed uint8) {
		l, err := Open(bytes.NewReader(img))
		if err != nil {
			return
		}
		base := bytes.Repeat([]byte{seed}, size)
		o := ExploreOptions{DeviceSize: size, MaxStates: 40, MaxSubsetStates: 8, Tear: seed&1 == 0, Seed: uint64(seed), Parallel: 2}
		_, err = Explore(context.Background(), l, bytes.NewReader(base), o, func(ctx context.Context, s State) error {
			got, err := s.Bytes()
			if err != nil {
				return err
			}
			dev := &xmem{b: bytes.Clone(base)}
			if err := ReplayState(l, s.Description, dev); err != nil {
				return err
			}
			if !bytes.Equal(got, dev.b) {
				return fmt.Errorf("state %v differs from its replay", s.Description)
			}
			return nil
		})
		if err == nil {
			return
		}
		if errors.Is(err, ErrCheck) {
			t.Fatal(err)
		}
		for _, want := range []error{ErrMalformed, ErrTruncated, ErrDeviceSize} {
			if errors.Is(err, want) {
				return
			}
		}
		t.Fatalf("error wraps no sentinel: %v", err)
	})
}
