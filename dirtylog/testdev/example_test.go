package testdev_test

import (
	"fmt"

	"github.com/dmlog/dmlog/dirtylog/testdev"
)

// A power cut on a Memory device keeps what was synced and loses the rest.
func ExampleMemory_Crash() {
	dev := testdev.NewMemory(4096)
	dev.WriteAt([]byte("durable"), 0)
	dev.Sync()
	dev.WriteAt([]byte("lost"), 512)

	rep := dev.Crash(testdev.CrashOptions{Mode: testdev.DropAll})
	b := make([]byte, 7)
	dev.ReadAt(b, 0)
	lost := make([]byte, 4)
	dev.ReadAt(lost, 512)
	fmt.Printf("pending %d, kept %d: %q %q\n", rep.Pending, rep.Kept, b, lost)
	// Output: pending 1, kept 0: "durable" "\x00\x00\x00\x00"
}

// A Faulty device fails the operations its rules select.
func ExampleFaulty() {
	dev := testdev.NewFaulty(testdev.NewMemory(4096))
	dev.Add(testdev.Rule{Label: "bad sector", Op: testdev.OpWrite, Off: 1024, Len: 512})

	_, err1 := dev.WriteAt(make([]byte, 512), 0)
	_, err2 := dev.WriteAt(make([]byte, 512), 1024)
	fmt.Println(err1)
	fmt.Println(err2)
	// Output:
	// <nil>
	// testdev: injected write error "bad sector" at offset 1024 length 512
}

// A Power switch cuts a set of devices at one instant (say the legs and
// the log of a mirror); each Memory then decides what it kept.
func ExamplePower() {
	var power testdev.Power
	leg, log := power.Device(testdev.NewMemory(4096)), power.Device(testdev.NewMemory(4096))
	leg.WriteAt([]byte("data"), 0)
	log.WriteAt([]byte("mark"), 0)
	log.Sync()

	power.Cut()
	_, err := leg.WriteAt([]byte("late"), 0)
	leg.Memory().Crash(testdev.CrashOptions{Mode: testdev.DropAll})
	log.Memory().Crash(testdev.CrashOptions{Mode: testdev.DropAll})
	fmt.Println(err)
	fmt.Printf("leg %q, log %q\n", leg.Memory().Bytes()[:4], log.Memory().Bytes()[:4])
	// Output:
	// testdev: power cut
	// leg "\x00\x00\x00\x00", log "mark"
}
