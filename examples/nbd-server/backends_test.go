package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/dmlog/dmlog/logwrites"
)

// TestRecorderBackendMapsFUA checks the -record backend without any client:
// WriteAtFUA is a FUA entry, Sync a flush entry, Discard a discard entry,
// a mark a mark entry, in call order.
func TestRecorderBackendMapsFUA(t *testing.T) {
	dir := t.TempDir()
	b, err := serveRecord(filepath.Join(dir, "dev"), filepath.Join(dir, "log"), 1<<20, 512, false)
	if err != nil {
		t.Fatal(err)
	}
	dev := b.export.Dev.(recDev)
	p := bytes.Repeat([]byte{1}, 4096)
	if _, err := dev.WriteAtFUA(p, 8192); err != nil {
		t.Fatal(err)
	}
	if err := b.mark("m"); err != nil {
		t.Fatal(err)
	}
	if _, err := dev.WriteAt(p, 0); err != nil {
		t.Fatal(err)
	}
	if err := dev.Discard(4096, 4096); err != nil {
		t.Fatal(err)
	}
	if err := dev.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := b.close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(dir, "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	l, err := logwrites.Open(f)
	if err != nil {
		t.Fatal(err)
	}
	var got []logwrites.Flags
	for e, err := range l.Entries() {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, e.Flags)
	}
	want := []logwrites.Flags{logwrites.FlagFUA, logwrites.FlagMark, 0, logwrites.FlagDiscard, logwrites.FlagFlush, logwrites.FlagMark}
	if len(got) != len(want) {
		t.Fatalf("entries %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("entries %v, want %v", got, want)
		}
	}
}
