package nbd

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

func isSentinel(err error) bool {
	return errors.Is(err, ErrBadMagic) || errors.Is(err, ErrMalformed) || errors.Is(err, ErrOptionTooLong)
}

func FuzzParseOptionHeader(f *testing.F) {
	good := binary.BigEndian.AppendUint64(nil, magicOpt)
	good = binary.BigEndian.AppendUint32(good, optGo)
	f.Add(binary.BigEndian.AppendUint32(good, 10))
	f.Add(binary.BigEndian.AppendUint32(good, 1<<31))
	f.Add(make([]byte, 16))
	f.Add([]byte("IHAVEOPT"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := parseOptionHeader(b)
		if err != nil {
			if !isSentinel(err) {
				t.Fatalf("error %v wraps no sentinel", err)
			}
			return
		}
		if len(b) != 16 || h.length > maxOptionLength || h.opt != binary.BigEndian.Uint32(b[8:]) {
			t.Fatalf("accepted %x as %+v", b, h)
		}
	})
}

func FuzzParseInfoRequest(f *testing.F) {
	f.Add(infoData("", infoBlockSize))
	f.Add(infoData("export", infoName, infoDescription, infoBlockSize))
	f.Add([]byte{0, 0, 0, 9, 'a'})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseInfoRequest(b)
		if err != nil {
			if !isSentinel(err) {
				t.Fatalf("error %v wraps no sentinel", err)
			}
			return
		}
		if again := infoData(r.name, r.infos...); string(again) != string(b) {
			t.Fatalf("%x parsed as %+v, which encodes as %x", b, r, again)
		}
	})
}

func FuzzParseRequest(f *testing.F) {
	req := func(flags, typ uint16, handle, off uint64, n uint32) []byte {
		b := binary.BigEndian.AppendUint32(nil, magicRequest)
		b = binary.BigEndian.AppendUint16(b, flags)
		b = binary.BigEndian.AppendUint16(b, typ)
		b = binary.BigEndian.AppendUint64(b, handle)
		b = binary.BigEndian.AppendUint64(b, off)
		return binary.BigEndian.AppendUint32(b, n)
	}
	f.Add(req(0, cmdRead, 1, 0, 4096))
	f.Add(req(cmdFlagFUA, cmdWrite, 2, 1<<40, 1<<31))
	f.Add(req(0xffff, 0xffff, ^uint64(0), ^uint64(0), ^uint32(0)))
	f.Add(make([]byte, 28))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseRequest(b)
		if err != nil {
			if !isSentinel(err) {
				t.Fatalf("error %v wraps no sentinel", err)
			}
			return
		}
		if again := req(r.flags, r.typ, r.handle, r.off, r.length); string(again) != string(b) {
			t.Fatalf("%x parsed as %+v", b, r)
		}
	})
}

// FuzzSession feeds arbitrary client bytes (after the greeting) to a
// server connection, with a free slot and with MaxConns connections served
// already: it must end (the input runs out, then the client closes)
// without a panic or hang, whatever the bytes, and with no free slot it
// never reaches the device.
func FuzzSession(f *testing.F) {
	flags := binary.BigEndian.AppendUint32(nil, flagFixedNewstyle|flagNoZeroes)
	opt := func(b []byte, o uint32, data []byte) []byte {
		b = binary.BigEndian.AppendUint64(b, magicOpt)
		b = binary.BigEndian.AppendUint32(b, o)
		b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
		return append(b, data...)
	}
	reqb := func(b []byte, flags, typ uint16, off uint64, n uint32) []byte {
		b = binary.BigEndian.AppendUint32(b, magicRequest)
		b = binary.BigEndian.AppendUint16(b, flags)
		b = binary.BigEndian.AppendUint16(b, typ)
		b = binary.BigEndian.AppendUint64(b, 1)
		b = binary.BigEndian.AppendUint64(b, off)
		return binary.BigEndian.AppendUint32(b, n)
	}
	gob := opt(append([]byte{}, flags...), optGo, infoData("", infoBlockSize))
	write := append(reqb(append([]byte{}, gob...), 0, cmdWrite, 0, 8), "12345678"...)
	f.Add(gob)
	f.Add(opt(opt(append([]byte{}, flags...), optList, nil), optInfo, infoData("x")))
	f.Add(opt(append([]byte{}, flags...), optExportName, nil))
	f.Add(write)
	f.Add(reqb(reqb(append([]byte{}, gob...), 0, cmdRead, 0, 512), 0, cmdTrim, 512, 512))
	f.Add(reqb(append([]byte{}, gob...), 0, cmdWrite, 0, 1<<30))
	f.Add(reqb(append([]byte{}, gob...), 0, cmdDisc, 0, 0))
	f.Fuzz(func(t *testing.T, in []byte) {
		fuzzSession(t, in, false, write)
		fuzzSession(t, in, true, write)
	})
}

// fuzzSession serves in on one connection; full: MaxConns connections are
// served already, so its export is refused.
func fuzzSession(t *testing.T, in []byte, full bool, write []byte) {
	s, err := NewServer(Options{HandshakeTimeout: 5 * time.Second}, Export{Size: 1 << 16, Dev: newMemDev(1 << 16)})
	if err != nil {
		t.Fatal(err)
	}
	if full {
		s.serving = s.o.MaxConns
	}
	srv, cli := socketPair(t)
	defer cli.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c := newConn(s, srv)
		c.serve()
	}()
	// The client reads every reply, so the server never blocks on
	// them, and half-closes after its input: the server sees the end of
	// the input, not a connection that cannot take its replies.
	go io.Copy(io.Discard, cli)
	cli.SetWriteDeadline(time.Now().Add(5 * time.Second))
	cli.Write(in) // the server may stop reading early
	cli.CloseWrite()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("server connection did not end for input %x", in)
	}
	switch st := s.Stats(); {
	case full && st.Writes+st.Reads+st.Errors+st.Serving != 0:
		t.Fatalf("a refused connection reached the transmission phase: %+v", st)
	case !full && bytes.Equal(in, write) && st.Writes != 1:
		t.Fatalf("the write seed did not reach the transmission phase: %+v", st)
	}
}

// socketPair returns the two ends of a connected unix stream socket pair.
func socketPair(t *testing.T) (net.Conn, *net.UnixConn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conns := make([]net.Conn, 2)
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	return conns[0], conns[1].(*net.UnixConn)
}
