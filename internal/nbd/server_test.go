package nbd

import (
	"bytes"
	"errors"
	"net"
	"path/filepath"
	"testing"
)

// startServer serves exports on a unix socket in a temporary directory
// and closes the server (checking Serve's result) at cleanup.
func startServer(t *testing.T, o Options, exports ...Export) (*Server, net.Addr) {
	t.Helper()
	s, err := NewServer(o, exports...)
	if err != nil {
		t.Fatal(err)
	}
	l := listenUnix(t)
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return s, l.Addr()
}

func listenUnix(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("unix", filepath.Join(t.TempDir(), "nbd.sock"))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestReadWriteFlush(t *testing.T) {
	dev := newMemDev(1 << 20)
	s, addr := startServer(t, Options{}, Export{Name: "x", Size: 1 << 20, Dev: dev, MultiConn: true})
	c := dial(t, addr, "x")
	if c.size != 1<<20 {
		t.Fatalf("size %d", c.size)
	}
	want := uint16(tflagHasFlags | tflagSendFlush | tflagSendFUA | tflagSendTrim | tflagSendWriteZeroes | tflagCanMultiConn)
	if c.flags != want {
		t.Fatalf("transmission flags %#x, want %#x", c.flags, want)
	}
	if c.block != [3]uint32{1, 4096, DefaultMaxPayload} {
		t.Fatalf("block sizes %v", c.block)
	}
	p := bytes.Repeat([]byte("dmlog"), 1000)
	if e, _ := c.do(cmdWrite, 0, 4096, uint32(len(p)), p); e != 0 {
		t.Fatalf("write: errno %d", e)
	}
	if e, _ := c.do(cmdWrite, cmdFlagFUA, 100000, uint32(len(p)), p); e != 0 {
		t.Fatalf("FUA write: errno %d", e)
	}
	if e, _ := c.do(cmdFlush, 0, 0, 0, nil); e != 0 {
		t.Fatalf("flush: errno %d", e)
	}
	e, got := c.do(cmdRead, 0, 4096, uint32(len(p)), nil)
	if e != 0 || !bytes.Equal(got, p) {
		t.Fatalf("read back: errno %d, equal %v", e, bytes.Equal(got, p))
	}
	if !bytes.Equal(dev.bytes()[100000:100000+len(p)], p) {
		t.Fatal("FUA write not on the device")
	}
	if n := dev.syncs.Load(); n != 2 {
		t.Fatalf("%d syncs, want 2 (FUA fallback and flush)", n)
	}
	c.disconnect()
	if _, err := c.reply(); err == nil {
		t.Fatal("connection still open after NBD_CMD_DISC")
	}
	st := s.Stats()
	if st.Writes != 2 || st.FUAWrites != 1 || st.Flushes != 1 || st.Reads != 1 || st.Errors != 0 {
		t.Fatalf("stats %+v", st)
	}
}
