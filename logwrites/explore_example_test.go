package logwrites_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/dmlog/dmlog/dirtylog/testdev"
	"github.com/dmlog/dmlog/logwrites"
)

// A program that writes a record and then a commit block pointing at it,
// but forgets to sync between the two: the device may persist the commit
// without the record. Explore finds that state.
func ExampleExplore() {
	const size = 64 << 10
	dev := testdev.NewMemory(size)       // the data device
	logDev := testdev.NewMemory(1 << 20) // the log device
	rec, err := logwrites.New(dev, logDev, logwrites.Options{})
	if err != nil {
		panic(err)
	}
	record := bytes.Repeat([]byte{'r'}, 512)
	commit := append([]byte("commit"), make([]byte, 506)...)
	rec.WriteAt(record, 4096)
	rec.WriteAt(commit, 0) // bug: no Sync between the record and its commit
	rec.Sync()
	rec.Close()

	log, err := logwrites.Open(logDev)
	if err != nil {
		panic(err)
	}
	base := bytes.NewReader(make([]byte, size)) // the device was all zeros
	stats, err := logwrites.Explore(context.Background(), log, base, logwrites.ExploreOptions{Parallel: 1},
		func(ctx context.Context, s logwrites.State) error {
			c, r := make([]byte, 6), make([]byte, 1)
			s.ReadAt(c, 0)
			s.ReadAt(r, 4096)
			if string(c) == "commit" && r[0] != 'r' {
				return errors.New("commit without its record")
			}
			return nil
		})
	var se *logwrites.StateError
	if errors.As(err, &se) {
		fmt.Println(se.Err)
		fmt.Println(se.State.Description)
	}
	fmt.Println(stats.States, "states checked")
	// Output:
	// commit without its record
	// state 2 (subset, seed 0): cut before entry 2: no entries replayed, then 1; dropped 0
	// 3 states checked
}
