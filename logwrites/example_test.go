package logwrites_test

import (
	"bytes"
	"fmt"

	"github.com/dmlog/dmlog/internal/testdev"
	"github.com/dmlog/dmlog/logwrites"
)

// Record a small workload: plain writes wait for the next flush, a FUA
// write and a mark are logged at once.
func ExampleNew() {
	dev := testdev.NewMemory(1 << 20)    // the data device
	logDev := testdev.NewMemory(1 << 20) // the log device
	rec, err := logwrites.New(dev, logDev, logwrites.Options{SectorSize: 512})
	if err != nil {
		panic(err)
	}
	block := bytes.Repeat([]byte("a"), 4096)
	rec.WriteAt(block, 0)                        // held until the next flush
	rec.WriteAtFlags(block, 8192, logwrites.FUA) // logged at once
	rec.Mark("before-sync")                      // logged at once
	rec.Sync()                                   // logs the held write, then FLUSH
	fmt.Println("status:", rec.Status())
	if err := rec.Close(); err != nil { // logs the mark dm-log-writes-end
		panic(err)
	}

	log, err := logwrites.Open(logDev)
	if err != nil {
		panic(err)
	}
	for e, err := range log.Entries() {
		if err != nil {
			panic(err)
		}
		fmt.Printf("%d %-5v sector %2d n %d", e.Index, e.Flags, e.Sector, e.NrSectors)
		if e.Mark != "" {
			fmt.Printf(" %s", e.Mark)
		}
		fmt.Println()
	}
	// Output:
	// status: 4 20
	// 0 FUA   sector 16 n 8
	// 1 MARK  sector  0 n 0 before-sync
	// 2 NONE  sector  0 n 8
	// 3 FLUSH sector  0 n 0
	// 4 MARK  sector  0 n 0 dm-log-writes-end
}

// Rebuild the device as it was at a mark, and find where a mark is.
func ExampleReplay() {
	dev, logDev := testdev.NewMemory(1<<20), testdev.NewMemory(1<<20)
	rec, _ := logwrites.New(dev, logDev, logwrites.Options{})
	rec.WriteAt(bytes.Repeat([]byte("1"), 512), 0)
	rec.Sync()
	rec.Mark("one")
	rec.WriteAt(bytes.Repeat([]byte("2"), 512), 0)
	rec.Sync()
	rec.Close()

	log, _ := logwrites.Open(logDev)
	target := testdev.NewMemory(1 << 20)
	if err := logwrites.Replay(log, target, logwrites.ReplayOptions{EndMark: "one"}); err != nil {
		panic(err)
	}
	b := make([]byte, 1)
	target.ReadAt(b, 0)
	fmt.Printf("at mark one: %q\n", b)

	e, _ := logwrites.Find(log, logwrites.ReplayOptions{EndMark: "one"})
	fmt.Printf("find: %d@%d\n", e.Index, e.NextBlock())

	err := logwrites.Replay(log, target, logwrites.ReplayOptions{EndMark: "two"})
	fmt.Println(err)
	// Output:
	// at mark one: "1"
	// find: 2@5
	// end mark "two": logwrites: mark not found
}

// Check every flushed state with a checker.
func ExampleReplayOptions_checker() {
	dev, logDev := testdev.NewMemory(1<<20), testdev.NewMemory(1<<20)
	rec, _ := logwrites.New(dev, logDev, logwrites.Options{})
	for i := range 3 {
		rec.WriteAt(bytes.Repeat([]byte{byte('a' + i)}, 512), int64(i)*512)
		rec.Sync()
	}
	rec.Close()

	log, _ := logwrites.Open(logDev)
	target := testdev.NewMemory(1 << 20)
	err := logwrites.Replay(log, target, logwrites.ReplayOptions{
		CheckOn: logwrites.FlagFlush,
		Checker: func(e logwrites.Entry) error {
			b := make([]byte, 3)
			for i := range b {
				target.ReadAt(b[i:i+1], int64(i)*512)
			}
			b = bytes.ReplaceAll(b, []byte{0}, []byte("."))
			fmt.Printf("after entry %d: %s\n", e.Index, b)
			return nil
		},
	})
	fmt.Println("err:", err)
	// Output:
	// after entry 1: a..
	// after entry 3: ab.
	// after entry 5: abc
	// err: <nil>
}
