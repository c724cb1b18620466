package logwrites_test

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/dmlog/dmlog/dirtylog/testdev"
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

// Open a log, walk its entries, and see how a damaged log is reported:
// with the entry, its log block and a sentinel error.
func ExampleOpen() {
	dev, logDev := testdev.NewMemory(1<<20), testdev.NewMemory(1<<20)
	rec, _ := logwrites.New(dev, logDev, logwrites.Options{SectorSize: 4096})
	rec.WriteAt(bytes.Repeat([]byte("x"), 8192), 4096)
	rec.Discard(0, 4096)
	rec.Sync()
	rec.Close()
	img := logDev.Bytes()

	log, err := logwrites.Open(bytes.NewReader(img))
	if err != nil {
		panic(err)
	}
	fmt.Printf("sector size %d, %d entries\n", log.SectorSize(), log.NumEntries())
	for e, err := range log.Entries() {
		if err != nil {
			panic(err)
		}
		fmt.Printf("entry %d @%d: %v, sector %d, %d sectors", e.Index, e.Block, e.Flags, e.Sector, e.NrSectors)
		if e.Mark != "" {
			fmt.Printf(", %q", e.Mark)
		}
		fmt.Println()
	}

	// The same log cut short inside the first entry's data.
	short, _ := logwrites.Open(bytes.NewReader(img[:3*4096]))
	for _, err := range short.Entries() {
		if err != nil {
			fmt.Println("truncated:", errors.Is(err, logwrites.ErrTruncated))
			fmt.Println(err)
		}
	}
	_, err = logwrites.Open(bytes.NewReader(make([]byte, 4096)))
	fmt.Println("bad magic:", errors.Is(err, logwrites.ErrBadMagic))
	// Output:
	// sector size 4096, 4 entries
	// entry 0 @1: NONE, sector 1, 2 sectors
	// entry 1 @4: DISCARD, sector 0, 1 sectors
	// entry 2 @5: FLUSH, sector 0, 0 sectors
	// entry 3 @6: MARK, sector 0, 0 sectors, "dm-log-writes-end"
	// truncated: true
	// entry 0 @1: data of 2 sectors: logwrites: log truncated: 0 of 1 bytes at offset 16383
	// bad magic: true
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
