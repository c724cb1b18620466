package mirror

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/dmlog/dmlog/dirtylog/testdev"
)

// kernelRig opens devices by the names the kernel printed.
type kernelRig struct {
	devs map[string]*testdev.Memory
	fail map[string]*testdev.Faulty
}

func newKernelRig(names map[string]int64) *kernelRig {
	k := &kernelRig{devs: map[string]*testdev.Memory{}, fail: map[string]*testdev.Faulty{}}
	for n, size := range names {
		k.devs[n] = testdev.NewMemory(size)
		k.fail[n] = testdev.NewFaulty(k.devs[n])
	}
	return k
}

func (k *kernelRig) open(name string) (Leg, error) {
	f, ok := k.fail[name]
	if !ok {
		return nil, fmt.Errorf("no device %s", name)
	}
	return f, nil
}

func TestKernelStatusAndLogImages(t *testing.T) {
	man := loadManifest(t)
	const mib = 1 << 20
	t.Run("A", func(t *testing.T) {
		k := newKernelRig(map[string]int64{"254:64": 16 * mib, "254:80": 16 * mib, "254:96": mib})
		m, err := Parse("0 32768 mirror disk 3 254:96 1024 nosync 2 254:64 0 254:80 0", k.open)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := m.Status(), man.kernelLine(t, "dm-status", "A-after-create"); got != want {
			t.Errorf("status %q, kernel %q", got, want)
		}
		if got, want := m.Table(), man.kernelLine(t, "dm-table", "A-after-create"); got != want {
			t.Errorf("table %q, kernel %q", got, want)
		}
		if !bytes.Equal(k.devs["254:96"].Bytes(), readGz(t, "A-live-after-create.bin.gz")) {
			t.Error("log image after create differs from the kernel's")
		}
		for _, w := range []struct {
			off int64
			n   int
		}{{1572864, 65536}, {10485760, 4096}} {
			if _, err := m.WriteAt(fill(w.n, 'A'), w.off); err != nil {
				t.Fatal(err)
			}
		}
		if got, want := m.Status(), man.kernelLine(t, "dm-status", "A-after-writes"); got != want {
			t.Errorf("status %q, kernel %q", got, want)
		}
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(k.devs["254:96"].Bytes(), readGz(t, "A-after-remove.bin.gz")) {
			t.Error("log image after remove differs from the kernel's")
		}
		if !bytes.Equal(k.devs["254:64"].Bytes(), k.devs["254:80"].Bytes()) {
			t.Error("legs differ")
		}
	})
	t.Run("core", func(t *testing.T) {
		k := newKernelRig(map[string]int64{"254:64": 16 * mib, "254:80": 16 * mib})
		m, err := Parse("0 32768 mirror core 2 1024 nosync 2 254:64 0 254:80 0", k.open)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := m.Status(), man.kernelLine(t, "dm-status", "core-nosync"); got != want {
			t.Errorf("status %q, kernel %q", got, want)
		}
		if got, want := m.Table(), man.kernelLine(t, "dm-table", "core-nosync"); got != want {
			t.Errorf("table %q, kernel %q", got, want)
		}
		_ = m.Close()
		m, err = Parse("0 32768 mirror core 1 1024 2 254:64 0 254:80 0 1 handle_errors", k.open)
		if err != nil {
			t.Fatal(err)
		}
		(&rig{m: m}).waitSync(t)
		if got, want := m.Status(), man.kernelLine(t, "dm-status", "core-sync-handle_errors"); got != want {
			t.Errorf("status %q, kernel %q", got, want)
		}
		if got, want := m.Table(), man.kernelLine(t, "dm-table", "core-sync-handle_errors"); got != want {
			t.Errorf("table %q, kernel %q", got, want)
		}
		_ = m.Close()
	})
	t.Run("B", func(t *testing.T) {
		k := newKernelRig(map[string]int64{"254:112": 20 * mib, "254:128": 20 * mib, "254:144": mib})
		if _, err := k.devs["254:112"].WriteAt(fill(262144, 'C'), 0); err != nil {
			t.Fatal(err)
		}
		m, err := Parse("0 40960 mirror disk 3 254:144 1024 sync 2 254:112 0 254:128 0", k.open)
		if err != nil {
			t.Fatal(err)
		}
		(&rig{m: m}).waitSync(t)
		if got, want := m.Status(), man.kernelLine(t, "dm-status", "B-synced"); got != want {
			t.Errorf("status %q, kernel %q", got, want)
		}
		if got, want := m.Table(), man.kernelLine(t, "dm-table", "B-synced"); got != want {
			t.Errorf("table %q, kernel %q", got, want)
		}
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(k.devs["254:144"].Bytes(), readGz(t, "B-after-remove.bin.gz")) {
			t.Error("log image after remove differs from the kernel's")
		}
		if !bytes.Equal(k.devs["254:112"].Bytes(), k.devs["254:128"].Bytes()) {
			t.Error("legs differ after resync")
		}
	})
	t.Run("D", func(t *testing.T) {
		k := newKernelRig(map[string]int64{"254:208": 16 * mib, "253:0": 16 * mib, "254:240": mib})
		m, err := Parse("0 32768 mirror disk 3 254:240 1024 nosync 2 254:208 0 253:0 0", k.open)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := m.Status(), man.kernelLine(t, "dm-status", "D-after-create"); got != want {
			t.Errorf("status %q, kernel %q", got, want)
		}
		// The second leg becomes an error target.
		k.fail["253:0"].Add(testdev.Rule{Label: "error target", Op: testdev.OpRead | testdev.OpWrite})
		for _, w := range []int64{1572864, 5242880} {
			if _, err := m.WriteAt(fill(4096, 'D'), w); err != nil {
				t.Fatalf("write at %d: %v (the kernel completes it without handle_errors)", w, err)
			}
		}
		if got, want := m.Status(), man.kernelLine(t, "dm-status", "D-after-failed-writes"); got != want {
			t.Errorf("status %q, kernel %q", got, want)
		}
		if got, want := m.Table(), man.kernelLine(t, "dm-table", "D-after-failed-writes"); got != want {
			t.Errorf("table %q, kernel %q", got, want)
		}
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
		if got := m.Status(); got != man.kernelLine(t, "dm-status", "D-suspended") {
			t.Errorf("status after close %q", got)
		}
		if !bytes.Equal(k.devs["254:240"].Bytes(), readGz(t, "D-after-remove.bin.gz")) {
			t.Error("log image after remove differs from the kernel's (regions 3 and 10 must stay dirty)")
		}
	})
}
