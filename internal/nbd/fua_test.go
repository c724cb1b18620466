package nbd

import (
	"bytes"
	"sync/atomic"
	"testing"
)

// fuaDev records how writes arrive: natively FUA, plain, and syncs.
type fuaDev struct {
	*memDev
	fua, plain atomic.Int64
}

func (d *fuaDev) WriteAt(p []byte, off int64) (int, error) {
	d.plain.Add(1)
	return d.memDev.WriteAt(p, off)
}

func (d *fuaDev) WriteAtFUA(p []byte, off int64) (int, error) {
	d.fua.Add(1)
	return d.memDev.WriteAt(p, off)
}

// noSyncDev has neither Sync nor Discard nor FUA.
type noSyncDev struct{ d *memDev }

func (n noSyncDev) ReadAt(p []byte, off int64) (int, error)  { return n.d.ReadAt(p, off) }
func (n noSyncDev) WriteAt(p []byte, off int64) (int, error) { return n.d.WriteAt(p, off) }

func TestNativeFUAIsUsed(t *testing.T) {
	dev := &fuaDev{memDev: newMemDev(1 << 16)}
	_, addr := startServer(t, Options{}, Export{Size: 1 << 16, Dev: dev})
	c := dial(t, addr, "")
	p := bytes.Repeat([]byte{9}, 512)
	if e, _ := c.do(cmdWrite, cmdFlagFUA, 0, 512, p); e != 0 {
		t.Fatalf("errno %d", e)
	}
	if e, _ := c.do(cmdWrite, 0, 512, 512, p); e != 0 {
		t.Fatalf("errno %d", e)
	}
	if dev.fua.Load() != 1 || dev.plain.Load() != 1 || dev.syncs.Load() != 0 {
		t.Fatalf("fua %d plain %d syncs %d: want the FUA write through WriteAtFUA, no Sync", dev.fua.Load(), dev.plain.Load(), dev.syncs.Load())
	}
}

func TestCapabilitiesFollowTheBackend(t *testing.T) {
	_, addr := startServer(t, Options{}, Export{Size: 1 << 16, Dev: noSyncDev{newMemDev(1 << 16)}})
	c := dial(t, addr, "")
	if want := uint16(tflagHasFlags | tflagSendWriteZeroes); c.flags != want {
		t.Fatalf("flags %#x, want %#x (no flush, FUA, trim or multi-conn)", c.flags, want)
	}
	if e, _ := c.do(cmdFlush, 0, 0, 0, nil); e != errInval {
		t.Fatalf("flush without Sync: errno %d, want EINVAL", e)
	}
	if e, _ := c.do(cmdTrim, 0, 0, 512, nil); e != errInval {
		t.Fatalf("trim without Discard: errno %d, want EINVAL", e)
	}
}

func TestNewServerRejectsBadExports(t *testing.T) {
	d := newMemDev(4096)
	for _, e := range [][]Export{
		nil,
		{{Size: 0, Dev: d}},
		{{Size: 4096}},
		{{Size: 4096, Dev: d, MinBlock: 3}},
		{{Size: 4096, Dev: d, MinBlock: 1 << 17}},
		{{Size: 4096 + 512, Dev: d, MinBlock: 4096}},
		{{Size: 4096, Dev: d, PreferredBlock: 256}},
		{{Name: "a", Size: 4096, Dev: d}, {Name: "a", Size: 4096, Dev: d}},
	} {
		if _, err := NewServer(Options{}, e...); err == nil || !isBadExport(err) {
			t.Errorf("%+v: %v, want ErrBadExport", e, err)
		}
	}
}

// FUA on write-zeroes and trim is acknowledged only after a Sync; without
// FUA they do not sync.
func TestFUAOnZeroesAndTrimSyncs(t *testing.T) {
	dev := newMemDev(1 << 16)
	_, addr := startServer(t, Options{}, Export{Size: 1 << 16, Dev: dev})
	c := dial(t, addr, "")
	for _, tc := range []struct {
		name  string
		typ   uint16
		flags uint16
		syncs int64
	}{
		{"write-zeroes", cmdWriteZeroes, 0, 0},
		{"FUA write-zeroes", cmdWriteZeroes, cmdFlagFUA, 1},
		{"FUA NO_HOLE write-zeroes", cmdWriteZeroes, cmdFlagFUA | cmdFlagNoHole, 1},
		{"trim", cmdTrim, 0, 0},
		{"FUA trim", cmdTrim, cmdFlagFUA, 1},
	} {
		before := dev.syncs.Load()
		if e, _ := c.do(tc.typ, tc.flags, 4096, 8192, nil); e != 0 {
			t.Fatalf("%s: errno %d", tc.name, e)
		}
		if got := dev.syncs.Load() - before; got != tc.syncs {
			t.Fatalf("%s: %d syncs before the reply, want %d", tc.name, got, tc.syncs)
		}
	}
}
