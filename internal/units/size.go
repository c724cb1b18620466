// Package units parses and prints byte sizes for the example commands'
// flags: "128MiB", "64KiB", "4096" (bytes), "1.5GiB".
//
// Binary suffixes (K, KiB, M, MiB, G, GiB, T, TiB) are powers of 1024;
// decimal ones (kB, KB, MB, GB, TB) are powers of 1000; "B" or no suffix
// means bytes; "s" means 512-byte sectors. A size that is not a whole
// number of bytes, is negative, or overflows int64 is an error.
package units

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ErrBadSize is wrapped by every error ParseSize returns.
var ErrBadSize = errors.New("bad size")

var suffixes = []struct {
	s string
	m int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"kB", 1000}, {"KB", 1000}, {"MB", 1000_000}, {"GB", 1000_000_000}, {"TB", 1000_000_000_000},
	{"K", 1 << 10}, {"k", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"T", 1 << 40},
	{"s", 512}, {"B", 1},
}

// ParseSize returns the number of bytes s names.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, x := range suffixes {
		if strings.HasSuffix(t, x.s) {
			mult = x.m
			t = strings.TrimSpace(strings.TrimSuffix(t, x.s))
			break
		}
	}
	if t == "" {
		return 0, fmt.Errorf("%w %q: no number (want e.g. 64KiB, 128MiB or 4096 for bytes)", ErrBadSize, s)
	}
	if n, err := strconv.ParseInt(t, 10, 64); err == nil {
		if n < 0 {
			return 0, fmt.Errorf("%w %q: negative", ErrBadSize, s)
		}
		if n > math.MaxInt64/mult {
			return 0, fmt.Errorf("%w %q: too large", ErrBadSize, s)
		}
		return n * mult, nil
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("%w %q: not a number (want e.g. 64KiB, 128MiB or 4096 for bytes)", ErrBadSize, s)
	}
	if f < 0 {
		return 0, fmt.Errorf("%w %q: negative", ErrBadSize, s)
	}
	v := f * float64(mult)
	if v >= math.MaxInt64 {
		return 0, fmt.Errorf("%w %q: too large", ErrBadSize, s)
	}
	if v != math.Trunc(v) {
		return 0, fmt.Errorf("%w %q: not a whole number of bytes", ErrBadSize, s)
	}
	return int64(v), nil
}

// FormatSize prints n bytes in the largest binary unit that divides it
// exactly ("64KiB", "128MiB"), or in bytes ("1000B").
func FormatSize(n int64) string {
	for _, u := range []struct {
		s string
		m int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n != 0 && n%u.m == 0 {
			return strconv.FormatInt(n/u.m, 10) + u.s
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}

// Size is a byte count usable as a flag.Value:
//
//	region := units.Size(64 << 10)
//	flag.Var(&region, "region", "region size (e.g. 64KiB)")
type Size int64

// String prints the size as FormatSize does.
func (z *Size) String() string { return FormatSize(int64(*z)) }

// Set parses s as ParseSize does.
func (z *Size) Set(s string) error {
	n, err := ParseSize(s)
	if err != nil {
		return err
	}
	*z = Size(n)
	return nil
}
