package main

import (
	"os"
	"testing"
	"time"
)

// TestMain lets the test binary act as the demo's workload child, since
// the demo re-executes os.Args[0].
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		main()
		return
	}
	os.Exit(m.Run())
}

// TestDemo runs the whole demo (child process, SIGKILL, recovery,
// verify) on a small mirror.
func TestDemo(t *testing.T) {
	if err := demo(t.TempDir(), 8<<20, 256<<10, 0, 4, 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"64MiB": 64 << 20, "512KiB": 512 << 10, "1G": 1 << 30, "4096": 4096} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v", in, got, err)
		}
	}
	if _, err := parseSize("lots"); err == nil {
		t.Error("parseSize(lots) succeeded")
	}
}
