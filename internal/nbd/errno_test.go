package nbd

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"testing"
)

// Backend errors map to the protocol's values as it asks: ENOSPC, EDQUOT
// and EFBIG to NBD_ENOSPC, permission errors to NBD_EPERM, anything else
// unknown to NBD_EIO.
func TestErrnoOf(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want uint32
	}{
		{syscall.ENOSPC, errNoSpc},
		{fmt.Errorf("wrapped: %w", syscall.EDQUOT), errNoSpc},
		{&os.PathError{Op: "write", Path: "x", Err: syscall.EFBIG}, errNoSpc},
		{os.ErrPermission, errPerm},
		{syscall.EROFS, errPerm},
		{syscall.EINVAL, errInval},
		{io.ErrShortWrite, errIO},
		{errors.New("anything"), errIO},
	} {
		if got := errnoOf(tc.err); got != tc.want {
			t.Errorf("errnoOf(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}
