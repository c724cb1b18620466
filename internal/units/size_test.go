package units

import (
	"errors"
	"flag"
	"io"
	"testing"
)

func TestParseSize(t *testing.T) {
	good := map[string]int64{
		"4096": 4096, "0": 0, "64KiB": 64 << 10, "64K": 64 << 10, "128MiB": 128 << 20,
		"1.5GiB": 3 << 29, "2TiB": 2 << 40, "1kB": 1000, "8s": 4096, "512B": 512, " 1 MiB ": 1 << 20,
	}
	for in, want := range good {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "KiB", "-1", "-4KiB", "abc", "1.3B", "0.1s", "9999999TiB", "NaN", "Inf", "1e30"} {
		if _, err := ParseSize(in); !errors.Is(err, ErrBadSize) {
			t.Errorf("ParseSize(%q) = %v; want ErrBadSize", in, err)
		}
	}
}

func TestFormatSizeRoundTrips(t *testing.T) {
	for _, n := range []int64{0, 1, 1000, 4096, 64 << 10, 3 << 29, 5 << 40, 12345} {
		got, err := ParseSize(FormatSize(n))
		if err != nil || got != n {
			t.Errorf("ParseSize(FormatSize(%d)=%q) = %d, %v", n, FormatSize(n), got, err)
		}
	}
}

func TestSizeFlag(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	z := Size(64 << 10)
	fs.Var(&z, "region", "region size")
	if err := fs.Parse([]string{"-region", "1MiB"}); err != nil || z != 1<<20 {
		t.Fatalf("parse: %v, %d", err, z)
	}
	if err := fs.Parse([]string{"-region", "lots"}); err == nil {
		t.Fatal("bad size accepted")
	}
}
