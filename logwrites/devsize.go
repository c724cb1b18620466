package logwrites

import (
	"fmt"
	"io"
	"io/fs"
)

type sizer interface{ Size() int64 }

type statter interface{ Stat() (fs.FileInfo, error) }

// devSize is the size of a device, as far as its optional capabilities
// tell: its Size() method; or, for an *os.File, the length of a regular
// file (which grows: fixed is false) or the size of a block device, found
// by seeking to its end (Stat reports 0 for one; the file offset is
// restored). known is false when the device offers none of these.
func devSize(dev any) (size int64, fixed, known bool, err error) {
	switch d := dev.(type) {
	case sizer:
		return d.Size(), true, true, nil
	case statter:
		fi, err := d.Stat()
		if err != nil {
			return 0, false, false, fmt.Errorf("logwrites: sizing a device: %w", err)
		}
		if m := fi.Mode(); m&fs.ModeDevice == 0 || m&fs.ModeCharDevice != 0 {
			return fi.Size(), false, true, nil // a file: it may grow
		}
		sk, ok := dev.(io.Seeker)
		if !ok {
			return 0, false, false, nil
		}
		cur, err := sk.Seek(0, io.SeekCurrent)
		if err != nil {
			return 0, false, false, fmt.Errorf("logwrites: sizing a block device: %w", err)
		}
		end, err := sk.Seek(0, io.SeekEnd)
		if _, rerr := sk.Seek(cur, io.SeekStart); err == nil {
			err = rerr
		}
		if err != nil {
			return 0, false, false, fmt.Errorf("logwrites: sizing a block device: %w", err)
		}
		return end, true, true, nil
	}
	return 0, false, false, nil
}
