//go:build linux

package logwrites

import (
	"os"
	"syscall"
	"testing"
)

// allocatedBlocks returns the file's allocated 512-byte blocks, -1 if unknown.
func allocatedBlocks(t *testing.T, f *os.File) int64 {
	fi, err := f.Stat()
	if err != nil {
		return -1
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Blocks
	}
	return -1
}
