package dirtylog_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dmlog/dmlog/dirtylog"
	"github.com/dmlog/dmlog/dirtylog/testdev"
)

// opLog wraps a device and records the order of writes, syncs and
// callback calls.
type opLog struct {
	*testdev.Faulty
	mu  sync.Mutex
	ops []string
}

func newOpLog(dev *testdev.Memory) *opLog { return &opLog{Faulty: testdev.NewFaulty(dev)} }

func (o *opLog) add(s string) {
	o.mu.Lock()
	o.ops = append(o.ops, s)
	o.mu.Unlock()
}

func (o *opLog) WriteAt(p []byte, off int64) (int, error) {
	n, err := o.Faulty.WriteAt(p, off)
	if err == nil {
		o.add("write")
	}
	return n, err
}

func (o *opLog) Sync() error {
	err := o.Faulty.Sync()
	if err == nil {
		o.add("sync")
	}
	return err
}

func (o *opLog) take() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	s := o.ops
	o.ops = nil
	return s
}

func (o *opLog) Size() int64 { return o.Faulty.Size() }

func diskOpts(regions int64) dirtylog.Options {
	return dirtylog.Options{RegionSize: 1024, DeviceSize: regions * 1024}
}

func TestDiskFormatBits(t *testing.T) {
	ctx := context.Background()
	dev := testdev.NewMemory(8192)
	o := diskOpts(1000)
	o.Sync = dirtylog.NoSync
	d, err := dirtylog.OpenDisk(dev, o)
	require.NoError(t, err)
	b := dev.Bytes()
	require.Equal(t, []byte{0x72, 0x52, 0x69, 0x4D}, b[0:4])
	require.EqualValues(t, 2, binary.LittleEndian.Uint32(b[4:]))
	require.EqualValues(t, 1000, binary.LittleEndian.Uint64(b[8:]))
	// 1000 regions: a 128-byte bitmap, 1536 bytes of I/O; padding bits 0.
	require.Equal(t, byte(0xff), b[1024])
	require.Equal(t, byte(0xff), b[1024+124], "regions 992..999")
	require.Equal(t, byte(0x00), b[1024+125], "bits 1000..1023 are padding")
	require.Equal(t, make([]byte, 8192-1152), b[1152:])

	d.MarkRegion(0)
	d.MarkRegion(9)
	require.NoError(t, d.Flush(ctx))
	b = dev.Bytes()
	require.Equal(t, byte(0xfe), b[1024], "region 0 is byte 1024 bit 0")
	require.Equal(t, byte(0xfd), b[1025], "region 9 is byte 1025 mask 0x02")
}

func TestDiskIOSizeRounding(t *testing.T) {
	for _, tc := range []struct {
		bs      int
		regions int64
		need    int64
	}{
		{512, 1000, 1536},
		{4096, 1000, 4096},
		{512, 4096 * 8, 1024 + 4096},
		{4096, 4096*8 + 1, 8192},
	} {
		o := diskOpts(tc.regions)
		o.LogicalBlockSize = tc.bs
		size, err := dirtylog.DiskLogSize(o.DeviceSize, o.RegionSize, int64(tc.bs))
		require.NoError(t, err)
		require.Equal(t, tc.need, size, "DiskLogSize %+v", tc)
		_, err = dirtylog.OpenDisk(testdev.NewMemory(tc.need-1), o)
		require.ErrorIs(t, err, dirtylog.ErrLogDeviceTooSmall, "%+v", tc)
		require.ErrorContains(t, err, fmt.Sprintf("holds %d bytes", tc.need-1))
		require.ErrorContains(t, err, fmt.Sprintf("needs %d bytes", tc.need))
		require.Equal(t, 1, strings.Count(err.Error(), "too small"), "the words are not repeated: %v", err)
		dev := testdev.NewMemory(tc.need)
		_, err = dirtylog.OpenDisk(dev, o)
		require.NoError(t, err, "%+v", tc)
	}
}

func TestDiskResumeRules(t *testing.T) {
	ctx := context.Background()
	const n = 70
	prepare := func(t *testing.T) *testdev.Memory {
		dev := testdev.NewMemory(4096)
		o := diskOpts(n)
		o.Sync = dirtylog.NoSync
		d, err := dirtylog.OpenDisk(dev, o)
		require.NoError(t, err)
		d.MarkRegion(5)
		d.MarkRegion(66)
		require.NoError(t, d.Flush(ctx))
		return dev
	}
	outOfSync := func(t *testing.T, d *dirtylog.Disk) []dirtylog.Region {
		var out []dirtylog.Region
		for r := dirtylog.Region(0); r < dirtylog.Region(d.RegionCount()); r++ {
			in, err := d.InSync(ctx, r)
			require.NoError(t, err)
			if !in {
				out = append(out, r)
			}
		}
		return out
	}

	t.Run("default trusts the bitmap", func(t *testing.T) {
		dev := prepare(t)
		d, err := dirtylog.OpenDisk(dev, diskOpts(n))
		require.NoError(t, err)
		require.Equal(t, []dirtylog.Region{5, 66}, outOfSync(t, d))
		require.EqualValues(t, n-2, d.SyncCount())
	})
	t.Run("sync reinitialises all dirty", func(t *testing.T) {
		dev := prepare(t)
		o := diskOpts(n)
		o.Sync = dirtylog.ForceSync
		d, err := dirtylog.OpenDisk(dev, o)
		require.NoError(t, err)
		require.Len(t, outOfSync(t, d), n)
	})
	t.Run("nosync reinitialises all clean", func(t *testing.T) {
		dev := prepare(t)
		o := diskOpts(n)
		o.Sync = dirtylog.NoSync
		d, err := dirtylog.OpenDisk(dev, o)
		require.NoError(t, err)
		require.Empty(t, outOfSync(t, d))
	})
	t.Run("bad magic is refused, untouched", func(t *testing.T) {
		dev := prepare(t)
		_, err := dev.WriteAt([]byte("XXXX"), 0)
		require.NoError(t, err)
		before := dev.Bytes()
		for _, m := range []dirtylog.SyncMode{dirtylog.DefaultSync, dirtylog.ForceSync, dirtylog.NoSync} {
			o := diskOpts(n)
			o.Sync = m
			_, err = dirtylog.OpenDisk(dev, o)
			require.ErrorIs(t, err, dirtylog.ErrNotLog, "mode %v", m)
			require.ErrorContains(t, err, "found 58 58 58 58 02 00 00 00 46 00 00 00 00 00 00 00 at byte 0")
			require.ErrorContains(t, err, "Options.Format")
			require.Equal(t, before, dev.Bytes(), "a refused device is not written")
		}
	})
	t.Run("bad magic with Format starts over with a full resync", func(t *testing.T) {
		dev := prepare(t)
		_, err := dev.WriteAt([]byte("XXXX"), 0)
		require.NoError(t, err)
		o := diskOpts(n)
		o.Format = true
		d, err := dirtylog.OpenDisk(dev, o)
		require.NoError(t, err)
		require.Len(t, outOfSync(t, d), n)
		require.Equal(t, "3 disk log A", d.Status())
	})
	t.Run("version 1 is read as 2 and rewritten", func(t *testing.T) {
		dev := prepare(t)
		_, err := dev.WriteAt([]byte{1, 0, 0, 0}, 4)
		require.NoError(t, err)
		d, err := dirtylog.OpenDisk(dev, diskOpts(n))
		require.NoError(t, err)
		require.Equal(t, []dirtylog.Region{5, 66}, outOfSync(t, d))
		require.EqualValues(t, 2, binary.LittleEndian.Uint32(dev.Bytes()[4:]))
		require.Equal(t, "3 disk log A", d.Status())
	})
	t.Run("version 3 is refused, untouched", func(t *testing.T) {
		dev := prepare(t)
		_, err := dev.WriteAt([]byte{3, 0, 0, 0}, 4)
		require.NoError(t, err)
		before := dev.Bytes()
		_, err = dirtylog.OpenDisk(dev, diskOpts(n))
		require.ErrorIs(t, err, dirtylog.ErrBadVersion)
		require.ErrorContains(t, err, "version 3")
		require.Equal(t, before, dev.Bytes())
	})
	t.Run("version 3 with Format fails the log, resyncs all, rewrites v2", func(t *testing.T) {
		dev := prepare(t)
		_, err := dev.WriteAt([]byte{3, 0, 0, 0}, 4)
		require.NoError(t, err)
		var events []dirtylog.Event
		o := diskOpts(n)
		o.Format = true
		o.OnEvent = func(e dirtylog.Event) { events = append(events, e) }
		d, err := dirtylog.OpenDisk(dev, o)
		require.NoError(t, err)
		require.Equal(t, "3 disk log D", d.Status())
		require.Len(t, events, 1)
		require.ErrorIs(t, events[0].Err, dirtylog.ErrBadVersion)
		require.Len(t, outOfSync(t, d), n)
		require.EqualValues(t, 2, binary.LittleEndian.Uint32(dev.Bytes()[4:]))
	})
	t.Run("another region count is refused, untouched", func(t *testing.T) {
		dev := prepare(t)
		before := dev.Bytes()
		for _, m := range []dirtylog.SyncMode{dirtylog.DefaultSync, dirtylog.ForceSync, dirtylog.NoSync} {
			// A reopen with twice the region size (half the regions) is
			// the mistake this catches.
			o := dirtylog.Options{RegionSize: 2048, DeviceSize: n * 1024, Sync: m}
			_, err := dirtylog.OpenDisk(dev, o)
			require.ErrorIs(t, err, dirtylog.ErrGeometry, "mode %v", m)
			require.ErrorContains(t, err, "holds a log of 70 regions, the options give 35 regions of 2048 bytes")
			require.ErrorContains(t, err, "Options.Resize")
			_, err = dirtylog.OpenDisk(dev, diskOpts(n+10))
			require.ErrorIs(t, err, dirtylog.ErrGeometry)
			require.ErrorContains(t, err, "holds a log of 70 regions, the options give 80 regions of 1024 bytes")
			require.Equal(t, before, dev.Bytes(), "a refused device is not written")
		}
	})
	t.Run("growth: new regions dirty", func(t *testing.T) {
		dev := prepare(t)
		o := diskOpts(n + 10)
		o.Resize = true
		d, err := dirtylog.OpenDisk(dev, o)
		require.NoError(t, err)
		want := []dirtylog.Region{5, 66}
		for r := dirtylog.Region(n); r < n+10; r++ {
			want = append(want, r)
		}
		require.Equal(t, want, outOfSync(t, d))
		require.EqualValues(t, n+10, binary.LittleEndian.Uint64(dev.Bytes()[8:]))
	})
	t.Run("growth under nosync: new regions clean", func(t *testing.T) {
		dev := prepare(t)
		o := diskOpts(n + 10)
		o.Sync = dirtylog.NoSync
		o.Resize = true
		d, err := dirtylog.OpenDisk(dev, o)
		require.NoError(t, err)
		require.Empty(t, outOfSync(t, d))
	})
	t.Run("shrink clears the tail bits", func(t *testing.T) {
		dev := prepare(t)
		o := diskOpts(60)
		o.Resize = true
		d, err := dirtylog.OpenDisk(dev, o)
		require.NoError(t, err)
		require.Equal(t, []dirtylog.Region{5}, outOfSync(t, d))
		b := dev.Bytes()
		// Word 0 holds regions 0..63: bits 60..63 must now be zero.
		require.Zero(t, binary.LittleEndian.Uint64(b[1024:])>>60)
		require.EqualValues(t, 60, binary.LittleEndian.Uint64(b[8:]))
	})
	t.Run("bytes 16-1023 are preserved", func(t *testing.T) {
		dev := prepare(t)
		junk := []byte("user bytes kept by the kernel")
		_, err := dev.WriteAt(junk, 100)
		require.NoError(t, err)
		d, err := dirtylog.OpenDisk(dev, diskOpts(n))
		require.NoError(t, err)
		d.MarkRegion(1)
		require.NoError(t, d.Flush(ctx))
		require.Equal(t, junk, dev.Bytes()[100:100+len(junk)])
	})
	t.Run("read error at open is refused, untouched", func(t *testing.T) {
		mem := prepare(t)
		before := mem.Bytes()
		dev := testdev.NewFaulty(mem)
		dev.Add(testdev.Rule{Label: "bad read", Op: testdev.OpRead, Nth: 1})
		_, err := dirtylog.OpenDisk(dev, diskOpts(n))
		require.ErrorIs(t, err, dirtylog.ErrLogFailed)
		require.ErrorIs(t, err, testdev.ErrInjected)
		require.ErrorContains(t, err, "Options.Format")
		require.Equal(t, before, mem.Bytes())
	})
	t.Run("read error at open with Format fails the log and resyncs all", func(t *testing.T) {
		mem := prepare(t)
		dev := testdev.NewFaulty(mem)
		dev.Add(testdev.Rule{Label: "bad read", Op: testdev.OpRead, Nth: 1})
		o := diskOpts(n)
		o.Format = true
		d, err := dirtylog.OpenDisk(dev, o)
		require.NoError(t, err)
		require.Equal(t, "3 disk log D", d.Status())
		require.Len(t, outOfSync(t, d), n)
	})
	t.Run("read error at Resume fails the log and resyncs all", func(t *testing.T) {
		// The device was proven a log at open: the kernel's rule.
		dev := testdev.NewFaulty(prepare(t))
		d, err := dirtylog.OpenDisk(dev, diskOpts(n))
		require.NoError(t, err)
		require.Len(t, outOfSync(t, d), 2)
		dev.Add(testdev.Rule{Label: "bad read", Op: testdev.OpRead})
		require.NoError(t, d.Resume(ctx))
		require.Equal(t, "3 disk log D", d.Status())
		require.Len(t, outOfSync(t, d), n)
	})
	t.Run("a log overwritten behind a live Disk is refused at Resume", func(t *testing.T) {
		dev := prepare(t)
		d, err := dirtylog.OpenDisk(dev, diskOpts(n))
		require.NoError(t, err)
		_, err = dev.WriteAt([]byte("ext4"), 0)
		require.NoError(t, err)
		before := dev.Bytes()
		require.ErrorIs(t, d.Resume(ctx), dirtylog.ErrNotLog)
		require.Equal(t, before, dev.Bytes())
	})
}

func TestDiskFlushRules(t *testing.T) {
	ctx := context.Background()
	mem := testdev.NewMemory(4096)
	dev := newOpLog(mem)
	o := diskOpts(2000)
	o.Sync = dirtylog.NoSync
	o.FlushCallback = func() error { dev.add("callback"); return nil }
	d, err := dirtylog.OpenDisk(dev, o)
	require.NoError(t, err)
	require.Equal(t, []string{"write", "sync"}, dev.take(), "resume writes and syncs")

	require.NoError(t, d.Flush(ctx))
	require.Empty(t, dev.take(), "untouched: no I/O")

	d.MarkRegion(1)
	require.NoError(t, d.Flush(ctx))
	require.Equal(t, []string{"write", "sync"}, dev.take(), "a mark is written and synced")
	require.Equal(t, 0, mem.Pending(), "the mark is durable when Flush returns")

	d.MarkRegion(1) // already dirty on disk
	require.NoError(t, d.Flush(ctx))
	require.Empty(t, dev.take(), "re-marking a durable dirty region needs no I/O")

	d.ClearRegion(1)
	require.NoError(t, d.Flush(ctx))
	require.Equal(t, []string{"callback", "write"}, dev.take(), "clean-only: callback first, no log sync")

	d.MarkRegion(2)
	d.ClearRegion(2)
	require.NoError(t, d.Flush(ctx))
	require.Empty(t, dev.take(), "a mark undone before the flush changes nothing on disk")

	d.MarkRegion(3)
	d.ClearRegion(1999)
	d.MarkRegion(1999)
	d.MarkRegion(0)
	require.NoError(t, d.Flush(ctx))
	require.Equal(t, []string{"write", "sync"}, dev.take())
	require.Equal(t, byte(0xf6), mem.Bytes()[1024])
}

func TestDiskWritesOnlyChangedBlocks(t *testing.T) {
	ctx := context.Background()
	for _, bs := range []int{512, 4096} {
		mem := testdev.NewMemory(1 << 20)
		o := diskOpts(100000)
		o.LogicalBlockSize = bs
		o.Sync = dirtylog.NoSync
		d, err := dirtylog.OpenDisk(mem, o)
		require.NoError(t, err)
		mem.ResetStats()
		d.MarkRegion(50000)
		require.NoError(t, d.Flush(ctx))
		st := mem.Stats()
		require.EqualValues(t, 1, st.Writes)
		require.EqualValues(t, bs, st.BytesWritten, "block size %d", bs)
		// Two marks far apart: two blocks, two writes.
		mem.ResetStats()
		d.MarkRegion(10)
		d.MarkRegion(99999)
		require.NoError(t, d.Flush(ctx))
		st = mem.Stats()
		require.EqualValues(t, 2*bs, st.BytesWritten)
		// The device holds exactly what a whole-bitmap rewrite would.
		img, err := dirtylog.ReadDiskImage(mem, mem.Size())
		require.NoError(t, err)
		require.Equal(t, []dirtylog.Region{10, 50000, 99999}, img.Dirty())
	}
}

func TestDiskFailures(t *testing.T) {
	ctx := context.Background()
	newDisk := func(t *testing.T) (*dirtylog.Disk, *testdev.Faulty, *testdev.Memory, *[]dirtylog.Event) {
		mem := testdev.NewMemory(4096)
		dev := testdev.NewFaulty(mem)
		events := &[]dirtylog.Event{}
		o := diskOpts(100)
		o.Sync = dirtylog.NoSync
		o.OnEvent = func(e dirtylog.Event) { *events = append(*events, e) }
		d, err := dirtylog.OpenDisk(dev, o)
		require.NoError(t, err)
		return d, dev, mem, events
	}

	t.Run("write error: D, one event, next flush retries", func(t *testing.T) {
		d, dev, mem, events := newDisk(t)
		dev.Add(testdev.Rule{Label: "eio", Op: testdev.OpWrite})
		d.MarkRegion(7)
		err := d.Flush(ctx)
		require.ErrorIs(t, err, dirtylog.ErrLogFailed)
		require.ErrorIs(t, err, testdev.ErrInjected)
		d.MarkRegion(8)
		require.ErrorIs(t, d.Flush(ctx), dirtylog.ErrLogFailed)
		require.Equal(t, "3 disk log D", d.Status())
		require.Len(t, *events, 1)
		require.Equal(t, dirtylog.EventLogFailed, (*events)[0].Kind)
		dev.Clear()
		require.NoError(t, d.Flush(ctx))
		img, err := dirtylog.ReadDiskImage(snapshot(mem), 4096)
		require.NoError(t, err)
		require.Equal(t, []dirtylog.Region{7, 8}, img.Dirty())
		require.Equal(t, 0, mem.Pending())
		require.Equal(t, "3 disk log D", d.Status(), "failure flags are sticky")
	})
	t.Run("sync error: F, next flush syncs", func(t *testing.T) {
		d, dev, mem, events := newDisk(t)
		dev.Add(testdev.Rule{Label: "flush", Op: testdev.OpSync, Nth: 1})
		d.MarkRegion(7)
		require.ErrorIs(t, d.Flush(ctx), dirtylog.ErrLogFailed)
		require.Equal(t, "3 disk log F", d.Status())
		require.Len(t, *events, 1)
		require.Equal(t, 1, mem.Pending(), "written but not durable")
		require.NoError(t, d.Flush(ctx))
		require.Equal(t, 0, mem.Pending(), "the retry synced")
	})
	t.Run("callback error: log still written, all dirty, clears ignored", func(t *testing.T) {
		mem := testdev.NewMemory(4096)
		var events []dirtylog.Event
		o := diskOpts(100)
		o.Sync = dirtylog.NoSync
		o.FlushCallback = func() error { return errors.New("leg sync failed") }
		o.OnEvent = func(e dirtylog.Event) { events = append(events, e) }
		d, err := dirtylog.OpenDisk(mem, o)
		require.NoError(t, err)
		d.MarkRegion(4)
		require.NoError(t, d.Flush(ctx))
		d.ClearRegion(4)
		require.NoError(t, d.Flush(ctx))
		require.Len(t, events, 1)
		require.Equal(t, dirtylog.EventFlushCallbackFailed, events[0].Kind)
		for r := dirtylog.Region(0); r < 100; r++ {
			clean, err := d.IsClean(ctx, r)
			require.NoError(t, err)
			require.False(t, clean)
		}
		d.ClearRegion(4)
		require.NoError(t, d.Flush(ctx))
		clean, _ := d.IsClean(ctx, 4)
		require.False(t, clean, "clears are ignored after a callback failure")
		img, err := dirtylog.ReadDiskImage(snapshot(mem), 4096)
		require.NoError(t, err)
		require.Len(t, img.Dirty(), 100)
	})
}

// snapshot gives a ReaderAt over the device's current contents.
func snapshot(m *testdev.Memory) *testdev.Memory { return testdev.NewMemoryFrom(m.Bytes()) }

// TestDiskCrashMatrix: what survives a power cut of the log device.
func TestDiskCrashMatrix(t *testing.T) {
	ctx := context.Background()
	reopen := func(t *testing.T, mem *testdev.Memory) []dirtylog.Region {
		d, err := dirtylog.OpenDisk(mem, diskOpts(100))
		require.NoError(t, err)
		var out []dirtylog.Region
		for r := dirtylog.Region(0); r < 100; r++ {
			if in, _ := d.InSync(ctx, r); !in {
				out = append(out, r)
			}
		}
		return out
	}
	start := func(t *testing.T) (*dirtylog.Disk, *testdev.Memory) {
		mem := testdev.NewMemory(4096)
		o := diskOpts(100)
		o.Sync = dirtylog.NoSync
		o.FlushCallback = func() error { return nil }
		d, err := dirtylog.OpenDisk(mem, o)
		require.NoError(t, err)
		return d, mem
	}
	for seed := uint64(0); seed < 20; seed++ {
		for _, mode := range []testdev.CrashMode{testdev.DropAll, testdev.KeepRandom, testdev.KeepAll} {
			crash := testdev.CrashOptions{Mode: mode, Seed: seed, Tear: seed%2 == 1}

			d, mem := start(t)
			d.MarkRegion(12)
			require.NoError(t, d.Flush(ctx))
			mem.Crash(crash)
			require.Equal(t, []dirtylog.Region{12}, reopen(t, mem), "mark+flush then crash: dirty (%v)", crash)

			d, mem = start(t)
			d.MarkRegion(12)
			require.NoError(t, d.Flush(ctx))
			d.ClearRegion(12)
			require.NoError(t, d.Flush(ctx))
			require.NoError(t, mem.Sync())
			mem.Crash(crash)
			require.Empty(t, reopen(t, mem), "clear+flush+sync then crash: clean (%v)", crash)

			d, mem = start(t)
			d.MarkRegion(12)
			require.NoError(t, d.Flush(ctx))
			d.ClearRegion(12)
			require.NoError(t, d.Flush(ctx)) // clean-only flush: not synced
			mem.Crash(crash)
			got := reopen(t, mem)
			require.True(t, len(got) == 0 || (len(got) == 1 && got[0] == 12),
				"an unsynced clear is kept or lost, never anything else: %v (%v)", got, crash)

			d, mem = start(t)
			d.MarkRegion(12)
			require.NoError(t, d.Flush(ctx))
			d.ClearRegion(12)
			mem.Crash(crash) // the clear never reached a flush
			require.Equal(t, []dirtylog.Region{12}, reopen(t, mem), "unflushed clear is lost (safe)")
		}
	}
}

func TestDiskConcurrentMarksRaceFlush(t *testing.T) {
	ctx := context.Background()
	mem := testdev.NewMemory(1 << 16)
	o := diskOpts(20000)
	o.Sync = dirtylog.NoSync
	d, err := dirtylog.OpenDisk(mem, o)
	require.NoError(t, err)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				r := dirtylog.Region((g*5003 + i*7) % 20000)
				d.MarkRegion(r)
				if err := d.Flush(ctx); err != nil {
					t.Error(err)
					return
				}
				// After our Flush, the mark is on the device.
				img, err := dirtylog.ReadDiskImage(mem, mem.Size())
				if err != nil {
					t.Error(err)
					return
				}
				if img.Clean.Test(uint(r)) {
					t.Errorf("region %d marked and flushed but clean on disk", r)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestDiskCloseMakesClearsDurable(t *testing.T) {
	ctx := context.Background()
	mem := testdev.NewMemory(4096)
	o := diskOpts(16)
	o.Sync = dirtylog.NoSync
	d, err := dirtylog.OpenDisk(mem, o)
	require.NoError(t, err)
	d.MarkRegion(1)
	require.NoError(t, d.Flush(ctx))
	d.ClearRegion(1)
	require.NoError(t, d.Close())
	mem.Crash(testdev.CrashOptions{Mode: testdev.DropAll})
	img, err := dirtylog.ReadDiskImage(mem, mem.Size())
	require.NoError(t, err)
	require.Empty(t, img.Dirty(), "a clean shutdown leaves a clean log")
}
