package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestRun runs the demo: a node killed mid-write, its regions resynced by
// the survivor, both legs identical and no acknowledged write lost (run
// fails otherwise).
func TestRun(t *testing.T) {
	var out bytes.Buffer
	if err := run(&out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	for _, want := range []string{"legs differ: true", "64/64 regions in sync", "legs identical: true", "lost: 0"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
