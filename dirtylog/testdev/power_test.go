package testdev

import (
	"bytes"
	"errors"
	"testing"
)

func TestPowerCutFailsEveryOperation(t *testing.T) {
	var p Power
	a, b := p.Device(NewMemory(4096)), p.Device(NewMemory(4096))
	if _, err := a.WriteAt([]byte("synced"), 0); err != nil {
		t.Fatal(err)
	}
	if err := a.Sync(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.WriteAt([]byte("volatile"), 0); err != nil {
		t.Fatal(err)
	}
	if p.Off() {
		t.Fatal("power off before Cut")
	}
	p.Cut()
	if !p.Off() {
		t.Fatal("power on after Cut")
	}
	buf := make([]byte, 8)
	for name, err := range map[string]error{
		"read":    func() error { _, err := a.ReadAt(buf, 0); return err }(),
		"write":   func() error { _, err := b.WriteAt(buf, 0); return err }(),
		"sync":    b.Sync(),
		"discard": b.Discard(0, 512),
	} {
		if !errors.Is(err, ErrPowerCut) {
			t.Errorf("%s after the cut: %v, want ErrPowerCut", name, err)
		}
	}
	if a.Size() != 4096 {
		t.Errorf("Size %d after the cut, want 4096", a.Size())
	}
	// What survives is the Memory's to decide.
	a.Memory().Crash(CrashOptions{})
	b.Memory().Crash(CrashOptions{})
	if got := a.Memory().Bytes()[:6]; !bytes.Equal(got, []byte("synced")) {
		t.Errorf("synced write lost: %q", got)
	}
	if got := b.Memory().Bytes()[:8]; !bytes.Equal(got, make([]byte, 8)) {
		t.Errorf("unsynced write kept by a drop-all crash: %q", got)
	}
}
