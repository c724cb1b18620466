package mirror

import (
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/dmlog/dmlog/internal/flock"
)

// legSize learns a leg's size in bytes when it can: from a Size() int64
// method, a regular file's length (Stat), or a block device's size (by
// seeking to its end and back). known is false for a device that offers
// none of these.
func legSize(dev any) (size int64, known bool, err error) {
	switch d := dev.(type) {
	case *offLeg:
		s, known, err := legSize(d.dev)
		return max(s-d.off, 0), known, err
	case interface{ Size() int64 }:
		return d.Size(), true, nil
	case interface{ Stat() (os.FileInfo, error) }:
		fi, err := d.Stat()
		if err != nil {
			return 0, false, fmt.Errorf("sizing: %w", err)
		}
		if fi.Mode().IsRegular() {
			return fi.Size(), true, nil
		}
		if fi.Mode()&fs.ModeDevice == 0 || fi.Mode()&fs.ModeCharDevice != 0 {
			return 0, false, nil
		}
		sk, ok := dev.(io.Seeker)
		if !ok {
			return 0, false, nil
		}
		cur, err := sk.Seek(0, io.SeekCurrent)
		if err != nil {
			return 0, false, fmt.Errorf("sizing a block device: %w", err)
		}
		end, err := sk.Seek(0, io.SeekEnd)
		if _, rerr := sk.Seek(cur, io.SeekStart); err == nil {
			err = rerr
		}
		if err != nil {
			return 0, false, fmt.Errorf("sizing a block device: %w", err)
		}
		return end, true, nil
	}
	return 0, false, nil
}

// legName is leg i's name for errors: its Options.Names entry if any.
func (o *Options) legName(i int) string {
	if i < len(o.Names) && o.Names[i] != "" {
		return fmt.Sprintf("leg %d (%s)", i, o.Names[i])
	}
	return fmt.Sprintf("leg %d", i)
}

// checkLegSizes returns the mirror's size in bytes, given the one asked
// for (0: the log's regions, but never past the shortest leg), and fails
// if a leg whose size it can learn is shorter than that.
func checkLegSizes(legs []Leg, o *Options, logSize, rs int64) (int64, error) {
	sizes := make([]int64, len(legs))
	shortest := int64(-1)
	for i, l := range legs {
		s, known, err := legSize(l)
		if err != nil {
			return 0, fmt.Errorf("%w: %s: %w", ErrBadLeg, o.legName(i), err)
		}
		sizes[i] = -1
		if known {
			sizes[i] = s
			if shortest < 0 || s < shortest {
				shortest = s
			}
		}
	}
	size := o.Size
	if size == 0 {
		size = logSize
		// A shortest leg inside the last region makes that region partial.
		if shortest >= 0 && shortest < size && (shortest+rs-1)/rs == (size+rs-1)/rs {
			size = shortest
		}
	}
	for i, s := range sizes {
		if s >= 0 && s < size {
			return 0, fmt.Errorf("%w: %s is %d bytes; the mirror needs %d bytes", ErrBadLeg, o.legName(i), s, size)
		}
	}
	return size, nil
}

// legFile is the *os.File a leg is (directly or at an offset), or nil.
func legFile(l Leg) *os.File {
	if ol, ok := l.(*offLeg); ok {
		l = ol.dev
	}
	f, _ := l.(*os.File)
	return f
}

// admitLeg checks a leg that AddLeg or ReplaceLeg puts at index i: it
// must hold the mirror's size if its size can be learned, and an
// *os.File leg of a local log is locked as New locks its legs. It returns
// the file locked, or nil.
func (m *Mirror) admitLeg(leg Leg, i int) (*os.File, error) {
	s, known, err := legSize(leg)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrBadLeg, m.opts.legName(i), err)
	}
	if known && s < m.size {
		return nil, fmt.Errorf("%w: new %s is %d bytes; the mirror needs %d bytes", ErrBadLeg, m.opts.legName(i), s, m.size)
	}
	f := legFile(leg)
	if f == nil || !m.local {
		return nil, nil
	}
	if err := flock.Lock(f, "mirror: new "+m.opts.legName(i)); err != nil {
		return nil, err
	}
	return f, nil
}
