package accept

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestTransient(t *testing.T) {
	opErr := func(e error) error {
		return &net.OpError{Op: "accept", Net: "unix", Err: os.NewSyscallError("accept4", e)}
	}
	for _, c := range []struct {
		err  error
		want bool
	}{
		{opErr(syscall.EMFILE), true},
		{opErr(syscall.ENFILE), true},
		{opErr(syscall.ENOBUFS), true},
		{opErr(syscall.ENOMEM), true},
		{opErr(syscall.ECONNABORTED), true},
		{&net.OpError{Op: "accept", Err: timeoutErr{}}, true},
		{fmt.Errorf("wrapped: %w", opErr(syscall.EMFILE)), true},
		{net.ErrClosed, false},
		{opErr(syscall.EINVAL), false},
		{errors.New("other"), false},
	} {
		if got := Transient(c.err); got != c.want {
			t.Errorf("Transient(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

func TestBackoff(t *testing.T) {
	var b Backoff
	want := []time.Duration{5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000}
	for i, w := range want {
		if got := b.Next(); got != w*time.Millisecond {
			t.Fatalf("wait %d: %v, want %v", i, got, w*time.Millisecond)
		}
	}
	b.Reset()
	if got := b.Next(); got != 5*time.Millisecond {
		t.Fatalf("after Reset: %v, want 5ms", got)
	}
}
