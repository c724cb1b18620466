package testdev

import (
	"compress/gzip"
	"io"
	"os"
	"testing"
)

// Gunzip returns the decompressed contents of a gzip'd file, such as the
// kernel-written images in testdata/, failing tb on any error.
func Gunzip(tb testing.TB, path string) []byte {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		tb.Fatalf("%s: %v", path, err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		tb.Fatalf("%s: %v", path, err)
	}
	return b
}

// GunzipTo decompresses the gzip'd file src into a new file dst.
func GunzipTo(tb testing.TB, src, dst string) {
	tb.Helper()
	if err := os.WriteFile(dst, Gunzip(tb, src), 0o600); err != nil {
		tb.Fatal(err)
	}
}
