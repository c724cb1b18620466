package mirror

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dmlog/dmlog/dirtylog"
	"github.com/dmlog/dmlog/dirtylog/testdev"
	"github.com/dmlog/dmlog/internal/flock"
)

func coreLog(t *testing.T, size, rs int64) *dirtylog.Core {
	t.Helper()
	log, err := dirtylog.NewCore(dirtylog.Options{RegionSize: rs, DeviceSize: size, Sync: dirtylog.NoSync})
	if err != nil {
		t.Fatal(err)
	}
	return log
}

// A leg shorter than the mirror is refused at construction, by every
// constructor, with the leg, its size and the size needed in bytes.
func TestShortLegRefused(t *testing.T) {
	const size, rs = 64 << 10, 4 << 10
	legs := []Leg{testdev.NewMemory(size), testdev.NewMemory(size - 5000)}
	_, err := New(legs, coreLog(t, size, rs), Options{})
	if !errors.Is(err, ErrBadLeg) || !strings.Contains(err.Error(), "leg 1 is 60536 bytes; the mirror needs 65536 bytes") {
		t.Fatalf("New with a short leg: %v", err)
	}
	_, err = New(legs, coreLog(t, size, rs), Options{Size: size - 100, Names: []string{"a", "b"}})
	if !errors.Is(err, ErrBadLeg) || !strings.Contains(err.Error(), "leg 1 (b) is 60536 bytes; the mirror needs 65436 bytes") {
		t.Fatalf("New with a short leg and Size: %v", err)
	}
	_, err = OpenDisk(legs, testdev.NewMemory(1<<20), dirtylog.Options{RegionSize: rs, DeviceSize: size}, Options{})
	if !errors.Is(err, ErrBadLeg) {
		t.Fatalf("OpenDisk with a short leg: %v", err)
	}
	open, _ := memOpener(size)
	// 128 sectors = 64 KiB; leg b starts 16 sectors in, so it holds 56 KiB.
	_, err = Parse("0 128 mirror core 2 8 nosync 2 a 0 b 16", open)
	if !errors.Is(err, ErrBadLeg) || !strings.Contains(err.Error(), "is 57344 bytes; the mirror needs 65536 bytes") {
		t.Fatalf("Parse with a leg short by its offset: %v", err)
	}

	// A file leg's size comes from Stat.
	dir := t.TempDir()
	f0, f1 := tempFile(t, dir, "l0", size), tempFile(t, dir, "l1", size-512)
	_, err = New([]Leg{f0, f1}, coreLog(t, size, rs), Options{Size: size})
	if !errors.Is(err, ErrBadLeg) || !strings.Contains(err.Error(), "leg 1 is 65024 bytes") {
		t.Fatalf("New with a short file leg: %v", err)
	}
}

// Size 0 never rounds the mirror past its shortest leg: a leg ending
// inside the last region makes that region partial.
func TestZeroSizeStopsAtShortestLeg(t *testing.T) {
	const size, rs = 64 << 10, 4 << 10
	short := int64(size - 2048)
	legs := []Leg{testdev.NewMemory(size), testdev.NewMemory(short)}
	m, err := New(legs, coreLog(t, size, rs), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if m.Size() != short {
		t.Fatalf("size %d, want the shortest leg's %d", m.Size(), short)
	}
	if _, err := m.WriteAt(make([]byte, 1), short); !errors.Is(err, ErrRange) {
		t.Fatalf("write past the shortest leg: %v, want ErrRange", err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	// OpenDisk with no size at all takes the shortest leg's.
	m, err = OpenDisk(legs, testdev.NewMemory(1<<20), dirtylog.Options{RegionSize: rs, Sync: dirtylog.NoSync}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Size() != short || m.Log().RegionCount() != 16 {
		t.Fatalf("OpenDisk without a size: %d bytes, %d regions; want %d bytes, 16 regions", m.Size(), m.Log().RegionCount(), short)
	}
}

func tempFile(t *testing.T, dir, name string, size int64) *os.File {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	return f
}

// A second mirror over the same leg files (other handles, as a second
// program would have) fails with a clear "in use" error while the first
// is open, and succeeds once it is closed.
func TestLegFilesLockedExclusively(t *testing.T) {
	const size, rs = 64 << 10, 4 << 10
	dir := t.TempDir()
	open := func() []Leg {
		var legs []Leg
		for _, n := range []string{"l0", "l1"} {
			legs = append(legs, tempFile(t, dir, n, size))
		}
		return legs
	}
	m1, err := New(open(), coreLog(t, size, rs), Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(open(), coreLog(t, size, rs), Options{})
	if !errors.Is(err, flock.ErrInUse) || !strings.Contains(err.Error(), "leg 0") || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second mirror over the same legs: %v, want an in-use error naming leg 0", err)
	}
	// Parse opens files too, at an offset.
	opener := func(name string) (Leg, error) { return os.OpenFile(filepath.Join(dir, name), os.O_RDWR, 0) }
	_, err = Parse("0 64 mirror core 2 8 nosync 2 l0 0 l1 8", opener)
	if !errors.Is(err, flock.ErrInUse) {
		t.Fatalf("Parse over locked legs: %v, want flock.ErrInUse", err)
	}
	if err := m1.Close(); err != nil {
		t.Fatal(err)
	}
	m2, err := New(open(), coreLog(t, size, rs), Options{})
	if err != nil {
		t.Fatalf("after the first mirror closed: %v", err)
	}
	if err := m2.Close(); err != nil {
		t.Fatal(err)
	}
	m3, err := Parse("0 64 mirror core 2 8 nosync 2 l0 0 l1 8", opener)
	if err != nil {
		t.Fatalf("Parse after the others closed: %v", err)
	}
	if err := m3.Close(); err != nil {
		t.Fatal(err)
	}
}

// Close, a second time, returns an error wrapping os.ErrClosed, like
// every operation after Close.
func TestSecondCloseIsErrClosed(t *testing.T) {
	r := newRig(t, rigOpts{sync: dirtylog.NoSync})
	if err := r.m.Close(); err != nil {
		t.Fatal(err)
	}
	err := r.m.Close()
	if !errors.Is(err, os.ErrClosed) || !errors.Is(err, ErrClosed) || err.Error() != "mirror: closed" {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := r.m.WriteAt([]byte{1}, 0); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("WriteAt after Close: %v", err)
	}
}

// A mirror whose last region is partial (10 regions of 4 KiB and one of
// 2 KiB) resyncs every region, verifies, and takes writes and discards
// at its very end, on a core and on a disk log.
func TestPartialLastRegion(t *testing.T) {
	const rs = 4 << 10
	const size = 10*rs + 2048
	for _, disk := range []bool{false, true} {
		r := newRig(t, rigOpts{size: size, rs: rs, disk: disk, opts: Options{NoResync: true}})
		if got := r.m.Log().RegionCount(); got != 11 {
			t.Fatalf("disk=%v: %d regions, want 11", disk, got)
		}
		if got := r.m.Log().SyncCount(); got != 0 {
			t.Fatalf("disk=%v: %d regions in sync before the first resync, want 0", disk, got)
		}
		if _, err := r.legs[0].WriteAt(fill(size, 'z'), 0); err != nil {
			t.Fatal(err)
		}
		// A resync that mishandles the short region fails its copy.
		wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := r.m.Resync(wctx)
		wcancel()
		if err != nil {
			t.Fatalf("disk=%v: Resync: %v (status %s)", disk, err, r.m.Status())
		}
		r.legsIdentical(t)
		if _, err := r.m.WriteAt(fill(3000, 'e'), size-3000); err != nil {
			t.Fatal(err)
		}
		if err := r.m.Discard(size-100, 100); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		var res VerifyResult
		res, err = r.m.Verify(ctx, false)
		cancel()
		if err != nil || res.Checked != 11 || len(res.Mismatched) != 0 {
			t.Fatalf("disk=%v: Verify = %+v, %v; want 11 regions, no mismatch", disk, res, err)
		}
		r.legsIdentical(t)
		if st := r.m.Stats(); st.Health != "AA" || st.InSync != 11 {
			t.Fatalf("disk=%v: health %s, %d/11 in sync", disk, st.Health, st.InSync)
		}
	}
}

// blockDev looks like an *os.File on a block device: Stat says device,
// and only seeking to the end tells its size.
type blockDev struct {
	*testdev.Memory
	pos int64
}

type blockInfo struct{ os.FileInfo }

func (blockInfo) Mode() os.FileMode { return os.ModeDevice }
func (blockInfo) Size() int64       { return 0 }

func (d *blockDev) Stat() (os.FileInfo, error) { return blockInfo{}, nil }

func (d *blockDev) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case 1:
		d.pos += off
	case 2:
		d.pos = d.Memory.Size() + off
	default:
		d.pos = off
	}
	return d.pos, nil
}

// legSize uses only what a block device offers (no Size method).
type blockOnly struct{ d *blockDev }

func (b blockOnly) ReadAt(p []byte, off int64) (int, error)  { return b.d.ReadAt(p, off) }
func (b blockOnly) WriteAt(p []byte, off int64) (int, error) { return b.d.WriteAt(p, off) }
func (b blockOnly) Stat() (os.FileInfo, error)               { return b.d.Stat() }
func (b blockOnly) Seek(off int64, whence int) (int64, error) {
	return b.d.Seek(off, whence)
}

// A block device leg is sized by seeking to its end, and the seek offset
// is put back.
func TestShortBlockDeviceLegRefused(t *testing.T) {
	const size, rs = 64 << 10, 4 << 10
	bd := &blockDev{Memory: testdev.NewMemory(size - 4096), pos: 123}
	_, err := New([]Leg{testdev.NewMemory(size), blockOnly{bd}}, coreLog(t, size, rs), Options{Size: size})
	if !errors.Is(err, ErrBadLeg) || !strings.Contains(err.Error(), "leg 1 is 61440 bytes; the mirror needs 65536 bytes") {
		t.Fatalf("New with a short block device: %v", err)
	}
	if bd.pos != 123 {
		t.Fatalf("seek offset left at %d, want 123", bd.pos)
	}
}

// AddLeg and ReplaceLeg check a new leg's size and lock a file leg; the
// replaced leg's file is unlocked.
func TestLegChangesCheckAndLock(t *testing.T) {
	const size, rs = 64 << 10, 4 << 10
	dir := t.TempDir()
	m, err := New([]Leg{tempFile(t, dir, "l0", size), tempFile(t, dir, "l1", size)}, coreLog(t, size, rs), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.AddLeg(testdev.NewMemory(size - 512)); !errors.Is(err, ErrBadLeg) || !strings.Contains(err.Error(), "new leg 2 is 65024 bytes; the mirror needs 65536 bytes") {
		t.Fatalf("AddLeg of a short leg: %v", err)
	}
	if err := m.ReplaceLeg(1, tempFile(t, dir, "l2", size)); err != nil {
		t.Fatal(err)
	}
	if err := flock.Lock(tempFile(t, dir, "l1", size), "replaced leg"); err != nil {
		t.Fatalf("the replaced leg's file is still locked: %v", err)
	}
	l2 := tempFile(t, dir, "l2", size)
	if err := flock.Lock(l2, "new leg"); !errors.Is(err, flock.ErrInUse) {
		t.Fatalf("the new leg's file is not locked: %v", err)
	}
	if err := m.AddLeg(l2); !errors.Is(err, flock.ErrInUse) {
		t.Fatalf("AddLeg of a file another mirror leg holds: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := flock.Lock(l2, "new leg"); err != nil {
		t.Fatalf("after Close: %v", err)
	}
}

// A leg one byte short of the mirror is refused, by New and by AddLeg and
// ReplaceLeg; a leg of exactly the mirror's size is taken. With Size 0, a
// shortest leg ending one byte into the last region makes a 1-byte last
// region; one ending at the region boundary leaves that region on no leg
// and is refused.
func TestLegSizeBoundaries(t *testing.T) {
	const size, rs = 64 << 10, 4 << 10
	legsOf := func(sizes ...int64) []Leg {
		var legs []Leg
		for _, s := range sizes {
			legs = append(legs, testdev.NewMemory(s))
		}
		return legs
	}
	const odd = size - 1000 // not a multiple of the region size
	if _, err := New(legsOf(odd, odd-1), coreLog(t, odd, rs), Options{Size: odd}); !errors.Is(err, ErrBadLeg) || !strings.Contains(err.Error(), "leg 1 is 64535 bytes; the mirror needs 64536 bytes") {
		t.Fatalf("New with a leg 1 byte short: %v", err)
	}
	m, err := New(legsOf(odd, odd), coreLog(t, odd, rs), Options{Size: odd})
	if err != nil {
		t.Fatalf("New with legs of exactly the size: %v", err)
	}
	if err := m.AddLeg(testdev.NewMemory(odd - 1)); !errors.Is(err, ErrBadLeg) {
		t.Fatalf("AddLeg of a leg 1 byte short: %v", err)
	}
	if err := m.ReplaceLeg(1, testdev.NewMemory(odd-1)); !errors.Is(err, ErrBadLeg) {
		t.Fatalf("ReplaceLeg with a leg 1 byte short: %v", err)
	}
	if err := m.AddLeg(testdev.NewMemory(odd)); err != nil {
		t.Fatalf("AddLeg of a leg of exactly the size: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}

	m, err = New(legsOf(size, size-rs+1), coreLog(t, size, rs), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if m.Size() != size-rs+1 {
		t.Fatalf("size %d, want %d (a 1-byte last region)", m.Size(), size-rs+1)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := New(legsOf(size, size-rs), coreLog(t, size, rs), Options{}); !errors.Is(err, ErrBadLeg) || !strings.Contains(err.Error(), "leg 1 is 61440 bytes; the mirror needs 65536 bytes") {
		t.Fatalf("New with Size 0 and a leg a whole region short: %v", err)
	}
}

// A New refused because a later leg is in use leaves no earlier leg
// locked: the caller can open a mirror over those files once the other
// user is gone.
func TestRefusedNewUnlocksEarlierLegs(t *testing.T) {
	const size, rs = 64 << 10, 4 << 10
	dir := t.TempDir()
	held := tempFile(t, dir, "l1", size)
	if err := flock.Lock(held, "other user"); err != nil {
		t.Fatal(err)
	}
	_, err := New([]Leg{tempFile(t, dir, "l0", size), tempFile(t, dir, "l1", size)}, coreLog(t, size, rs), Options{})
	if !errors.Is(err, flock.ErrInUse) || !strings.Contains(err.Error(), "leg 1") {
		t.Fatalf("New with leg 1 in use: %v, want flock.ErrInUse naming leg 1", err)
	}
	if err := flock.Lock(tempFile(t, dir, "l0", size), "after the refused New"); err != nil {
		t.Fatalf("leg 0 is still locked after New was refused: %v", err)
	}
}

// A New refused after its legs were locked (its LegsSyncer is bound to
// another mirror) unlocks them again.
func TestRefusedNewUnlocksLegsLockedFirst(t *testing.T) {
	const size, rs = 64 << 10, 4 << 10
	s := new(LegsSyncer)
	m1, err := New([]Leg{testdev.NewMemory(size)}, coreLog(t, size, rs), Options{Syncer: s})
	if err != nil {
		t.Fatal(err)
	}
	defer m1.Close()
	dir := t.TempDir()
	_, err = New([]Leg{tempFile(t, dir, "l0", size), tempFile(t, dir, "l1", size)}, coreLog(t, size, rs), Options{Syncer: s})
	if !errors.Is(err, ErrBadTable) {
		t.Fatalf("New with a LegsSyncer bound to another mirror: %v, want ErrBadTable", err)
	}
	for _, n := range []string{"l0", "l1"} {
		if err := flock.Lock(tempFile(t, dir, n, size), "after the refused New"); err != nil {
			t.Fatalf("%s is still locked after New was refused: %v", n, err)
		}
	}
}

// Every leg file AddLeg or ReplaceLeg locked is unlocked again: when the
// call is refused after the lock (too many legs; replacing the only
// readable leg), and, for a leg that joined, by Close.
func TestLegChangeLocksReleased(t *testing.T) {
	const size, rs = 64 << 10, 4 << 10
	dir := t.TempDir()
	lockable := func(name, when string) {
		t.Helper()
		if err := flock.Lock(tempFile(t, dir, name, size), when); err != nil {
			t.Fatalf("%s is still locked %s: %v", name, when, err)
		}
	}

	var legs []Leg
	for range MaxLegs {
		legs = append(legs, testdev.NewMemory(size))
	}
	full, err := New(legs, coreLog(t, size, rs), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer full.Close()
	if err := full.AddLeg(tempFile(t, dir, "extra", size)); !errors.Is(err, ErrBadLeg) {
		t.Fatalf("AddLeg past MaxLegs: %v, want ErrBadLeg", err)
	}
	lockable("extra", "after AddLeg was refused for too many legs")

	one, err := New([]Leg{testdev.NewMemory(size)}, coreLog(t, size, rs), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	if err := one.ReplaceLeg(0, tempFile(t, dir, "repl", size)); !errors.Is(err, ErrBadLeg) {
		t.Fatalf("ReplaceLeg of the only leg: %v, want ErrBadLeg", err)
	}
	lockable("repl", "after ReplaceLeg of the only readable leg was refused")

	if err := one.AddLeg(tempFile(t, dir, "joined", size)); err != nil {
		t.Fatal(err)
	}
	if err := flock.Lock(tempFile(t, dir, "joined", size), "while it is a leg"); !errors.Is(err, flock.ErrInUse) {
		t.Fatalf("a joined leg's file is not locked: %v", err)
	}
	if err := one.Close(); err != nil {
		t.Fatal(err)
	}
	lockable("joined", "after Close")
}
