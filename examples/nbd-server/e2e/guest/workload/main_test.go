package main

import (
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// runIn runs the workload with seed in a new directory and returns its
// durable lines and its listing.
func runIn(t *testing.T, seed uint64) (durable, listing []string) {
	t.Helper()
	root := filepath.Join(t.TempDir(), "w")
	var out bytes.Buffer
	w := newWorkload(root, seed, 8<<20, &out)
	if err := w.run(); err != nil {
		if errors.Is(err, syscall.EINVAL) && strings.Contains(err.Error(), "O_DIRECT") {
			t.Skipf("skipped: the temporary directory's file system refuses O_DIRECT (%v); set TMPDIR to a disk file system", err)
		}
		t.Fatal(err)
	}
	if w.durable == 0 || w.ops < 20 {
		t.Fatalf("the workload did little: %d ops, %d durable files", w.ops, w.durable)
	}
	var lst bytes.Buffer
	if !listTree(root, &lst) {
		t.Fatalf("listing failed:\n%s", lst.String())
	}
	return strings.Split(strings.TrimSpace(out.String()), "\n"), strings.Split(strings.TrimSpace(lst.String()), "\n")
}

// The workload is a function of its seed, and a file reported durable is
// never changed afterwards: the e2e tests rely on both.
func TestWorkloadDeterministicAndDurableFilesFrozen(t *testing.T) {
	d1, l1 := runIn(t, 7)
	d2, l2 := runIn(t, 7)
	if strings.Join(d1, "\n") != strings.Join(d2, "\n") || strings.Join(l1, "\n") != strings.Join(l2, "\n") {
		t.Fatal("two runs with seed 7 differ")
	}
	files := map[string]string{}
	for _, l := range l1 {
		if f := strings.Fields(l); len(f) == 5 && f[1] == "file" {
			files[f[2]] = f[3] + " " + f[4]
		}
	}
	for _, l := range d1 {
		f := strings.Fields(l)
		if len(f) != 5 || f[1] != "durable" {
			t.Fatalf("unexpected output line %q", l)
		}
		if got := files[f[2]]; got != f[3]+" "+f[4] {
			t.Errorf("durable file %s was %s when reported, %q at the end", f[2], f[3]+" "+f[4], got)
		}
	}
	_, l3 := runIn(t, 8)
	if strings.Join(l1, "\n") == strings.Join(l3, "\n") {
		t.Error("seeds 7 and 8 give the same tree")
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"4096": 4096, "24MiB": 24 << 20, "3KiB": 3 << 10, "1GiB": 1 << 30} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "x", "1.5MiB"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) accepted", in)
		}
	}
}
