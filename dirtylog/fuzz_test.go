package dirtylog_test

import (
	"bytes"
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/dmlog/dmlog/dirtylog"
	"github.com/dmlog/dmlog/dirtylog/testdev"
)

// FuzzOpenDisk feeds arbitrary device contents to OpenDisk and
// ReadDiskImage: no panic, allocations bounded by the device, errors wrap
// the sentinels, a refused device is not written, and whatever OpenDisk
// accepts is rewritten as a valid v2 log. mode%3 is the sync mode, bit 2
// sets Format and bit 3 Resize.
func FuzzOpenDisk(f *testing.F) {
	valid := dirtylog.EncodeDiskImage(40, nil, 512)
	f.Add(valid, uint16(39), uint8(0))
	f.Add(valid, uint16(40), uint8(8))
	f.Add(valid[:100], uint16(40), uint8(1))
	f.Add([]byte("MiRr"), uint16(1), uint8(2))
	f.Add([]byte("not a log"), uint16(7), uint8(0))
	f.Add([]byte("not a log"), uint16(7), uint8(4))
	f.Add(append(make([]byte, 1024), 0x53, 0xef), uint16(7), uint8(0))
	hugeNr := append([]byte{}, valid...)
	copy(hugeNr[8:], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Add(hugeNr, uint16(64), uint8(0))
	v3 := append([]byte{}, valid...)
	v3[4] = 3
	f.Add(v3, uint16(3), uint8(0))
	f.Fuzz(func(t *testing.T, dev []byte, regions uint16, mode uint8) {
		if len(dev) > 64<<10 {
			return
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		img, err := dirtylog.ReadDiskImage(bytes.NewReader(dev), int64(len(dev)))
		runtime.ReadMemStats(&after)
		// The bitmaps decoded are bounded by the device's bytes.
		if grew := after.TotalAlloc - before.TotalAlloc; grew > 8*uint64(len(dev))+64<<10 {
			t.Fatalf("ReadDiskImage of %d bytes allocated %d bytes", len(dev), grew)
		}
		if err != nil {
			if !errors.Is(err, dirtylog.ErrBadMagic) && !errors.Is(err, dirtylog.ErrBadVersion) &&
				!errors.Is(err, dirtylog.ErrTruncated) {
				t.Fatalf("ReadDiskImage: unexpected error %v", err)
			}
		} else if img.Header.NrRegions > uint64(len(dev))*8 {
			t.Fatalf("decoded %d regions from %d bytes", img.Header.NrRegions, len(dev))
		}

		n := int64(regions%2000) + 1
		mem := testdev.NewMemoryFrom(dev)
		o := dirtylog.Options{
			RegionSize: 1024, DeviceSize: n * 1024, Sync: dirtylog.SyncMode(mode % 3),
			Format: mode&4 != 0, Resize: mode&8 != 0,
		}
		d, err := dirtylog.OpenDisk(mem, o)
		if err != nil {
			switch {
			case errors.Is(err, dirtylog.ErrLogDeviceTooSmall):
			case errors.Is(err, dirtylog.ErrNotLog), errors.Is(err, dirtylog.ErrBadVersion):
				if o.Format {
					t.Fatalf("OpenDisk with Format: %v", err)
				}
			case errors.Is(err, dirtylog.ErrGeometry):
				if o.Resize {
					t.Fatalf("OpenDisk with Resize: %v", err)
				}
			default:
				t.Fatalf("OpenDisk: unexpected error %v", err)
			}
			if !bytes.Equal(mem.Bytes(), dev) {
				t.Fatalf("OpenDisk refused the device (%v) yet wrote it", err)
			}
			return
		}
		d.MarkRegion(dirtylog.Region(n - 1))
		if err := d.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		img, err = dirtylog.ReadDiskImage(mem, mem.Size())
		if err != nil {
			t.Fatalf("rewritten log does not read back: %v", err)
		}
		if img.Header.Version != 2 || img.Header.NrRegions != uint64(n) {
			t.Fatalf("rewritten header %+v", img.Header)
		}
		if img.Clean.Test(uint(n - 1)) {
			t.Fatal("flushed mark not on the device")
		}
	})
}

// FuzzNewArgs feeds arbitrary table words to the registry: no panic, and
// every error wraps a sentinel.
func FuzzNewArgs(f *testing.F) {
	f.Add("core", "1024 nosync", int64(1<<30))
	f.Add("disk", "log 1024 sync", int64(1<<30))
	f.Add("core", "1024k", int64(1<<20))
	f.Add("disk", "log 2", int64(1<<40))
	f.Add("core", "+8 nosync", int64(4096))
	f.Add("clustered-core", "8", int64(4096))
	f.Fuzz(func(t *testing.T, typ, words string, devSize int64) {
		args := strings.Fields(words)
		if len(args) > 8 {
			return
		}
		// A core log costs three bits per region: keep the fuzzer's
		// devices under 16 GiB so a tiny region size stays cheap.
		devSize %= 16 << 30
		env := dirtylog.Env{
			DeviceSize: devSize,
			Open: func(name string) (dirtylog.Device, error) {
				if name != "log" {
					return nil, errors.New("no such device")
				}
				return testdev.NewMemory(1 << 16), nil
			},
		}
		l, err := dirtylog.New(typ, args, env)
		if err != nil {
			for _, s := range []error{dirtylog.ErrUnknownType, dirtylog.ErrBadArgs, dirtylog.ErrBadRegionSize,
				dirtylog.ErrBadOptions, dirtylog.ErrLogDeviceTooSmall, dirtylog.ErrOpenDevice} {
				if errors.Is(err, s) {
					return
				}
			}
			t.Fatalf("New(%q, %q): error wraps no sentinel: %v", typ, args, err)
		}
		if l.RegionCount() == 0 || l.RegionSize() <= 0 {
			t.Fatalf("bad geometry %d x %d", l.RegionCount(), l.RegionSize())
		}
		_ = l.Close()
	})
}
