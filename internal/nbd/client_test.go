package nbd

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"testing"
	"time"
)

// testClient is a minimal NBD client for protocol tests: it negotiates with
// NBD_OPT_GO and sends raw requests; replies are read by the caller.
type testClient struct {
	t     testing.TB
	nc    net.Conn
	r     *bufio.Reader
	size  int64
	flags uint16
	block [3]uint32 // min, preferred, max
}

type optReply struct {
	opt, typ uint32
	data     []byte
}

type simpleReply struct {
	errno  uint32
	handle uint64
}

// dialRaw connects and reads the greeting, returning the connection
// positioned for the client flags.
func dialRaw(t testing.TB, addr net.Addr) (net.Conn, *bufio.Reader) {
	t.Helper()
	nc, err := net.DialTimeout(addr.Network(), addr.String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(20 * time.Second)) // fail fast rather than hang
	r := bufio.NewReader(nc)
	var hello [18]byte
	if _, err := io.ReadFull(r, hello[:]); err != nil {
		t.Fatalf("reading greeting: %v", err)
	}
	if binary.BigEndian.Uint64(hello[:]) != magicNBD || binary.BigEndian.Uint64(hello[8:]) != magicOpt {
		t.Fatalf("bad greeting %x", hello)
	}
	if f := binary.BigEndian.Uint16(hello[16:]); f != flagFixedNewstyle|flagNoZeroes {
		t.Fatalf("handshake flags %#x", f)
	}
	return nc, r
}

func sendOpt(t testing.TB, nc net.Conn, opt uint32, data []byte) {
	t.Helper()
	b := binary.BigEndian.AppendUint64(nil, magicOpt)
	b = binary.BigEndian.AppendUint32(b, opt)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	if _, err := nc.Write(append(b, data...)); err != nil {
		t.Fatalf("sending option %d: %v", opt, err)
	}
}

func readOptReply(t testing.TB, r *bufio.Reader) optReply {
	t.Helper()
	var h [20]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		t.Fatalf("reading option reply: %v", err)
	}
	if m := binary.BigEndian.Uint64(h[:]); m != magicOptReply {
		t.Fatalf("option reply magic %#x", m)
	}
	rep := optReply{opt: binary.BigEndian.Uint32(h[8:]), typ: binary.BigEndian.Uint32(h[12:])}
	rep.data = make([]byte, binary.BigEndian.Uint32(h[16:]))
	if _, err := io.ReadFull(r, rep.data); err != nil {
		t.Fatalf("reading option reply data: %v", err)
	}
	return rep
}

func infoData(name string, infos ...uint16) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
	b = append(b, name...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(infos)))
	for _, i := range infos {
		b = binary.BigEndian.AppendUint16(b, i)
	}
	return b
}

// dial connects and negotiates export name with NBD_OPT_GO.
func dial(t testing.TB, addr net.Addr, name string) *testClient {
	t.Helper()
	nc, r := dialRaw(t, addr)
	if _, err := nc.Write(binary.BigEndian.AppendUint32(nil, flagFixedNewstyle|flagNoZeroes)); err != nil {
		t.Fatal(err)
	}
	sendOpt(t, nc, optGo, infoData(name, infoBlockSize))
	c := &testClient{t: t, nc: nc, r: r}
	for {
		rep := readOptReply(t, r)
		if rep.typ == repAck {
			break
		}
		if rep.typ != repInfo {
			t.Fatalf("NBD_OPT_GO answered with %#x: %s", rep.typ, rep.data)
		}
		switch binary.BigEndian.Uint16(rep.data) {
		case infoExport:
			c.size = int64(binary.BigEndian.Uint64(rep.data[2:]))
			c.flags = binary.BigEndian.Uint16(rep.data[10:])
		case infoBlockSize:
			for i := range c.block {
				c.block[i] = binary.BigEndian.Uint32(rep.data[2+4*i:])
			}
		}
	}
	return c
}

func (c *testClient) send(typ, flags uint16, handle uint64, off uint64, length uint32, payload []byte) {
	c.t.Helper()
	b := make([]byte, requestSize, requestSize+len(payload))
	binary.BigEndian.PutUint32(b, magicRequest)
	binary.BigEndian.PutUint16(b[4:], flags)
	binary.BigEndian.PutUint16(b[6:], typ)
	binary.BigEndian.PutUint64(b[8:], handle)
	binary.BigEndian.PutUint64(b[16:], off)
	binary.BigEndian.PutUint32(b[24:], length)
	if _, err := c.nc.Write(append(b, payload...)); err != nil {
		c.t.Fatalf("sending command %d: %v", typ, err)
	}
}

func (c *testClient) reply() (simpleReply, error) {
	var h [16]byte
	if _, err := io.ReadFull(c.r, h[:]); err != nil {
		return simpleReply{}, err
	}
	if m := binary.BigEndian.Uint32(h[:]); m != magicSimpleRep {
		return simpleReply{}, fmt.Errorf("reply magic %#x", m)
	}
	return simpleReply{errno: binary.BigEndian.Uint32(h[4:]), handle: binary.BigEndian.Uint64(h[8:])}, nil
}

func (c *testClient) mustReply() simpleReply {
	c.t.Helper()
	r, err := c.reply()
	if err != nil {
		c.t.Fatalf("reading reply: %v", err)
	}
	return r
}

func (c *testClient) readData(n int) []byte {
	c.t.Helper()
	b := make([]byte, n)
	if _, err := io.ReadFull(c.r, b); err != nil {
		c.t.Fatalf("reading %d bytes of read data: %v", n, err)
	}
	return b
}

// do sends one request and waits for its reply (and read data).
func (c *testClient) do(typ, flags uint16, off uint64, length uint32, payload []byte) (uint32, []byte) {
	c.t.Helper()
	c.send(typ, flags, 77, off, length, payload)
	r := c.mustReply()
	if r.handle != 77 {
		c.t.Fatalf("reply for handle %d, want 77", r.handle)
	}
	if typ == cmdRead && r.errno == 0 {
		return 0, c.readData(int(length))
	}
	return r.errno, nil
}

func (c *testClient) disconnect() {
	c.send(cmdDisc, 0, 0, 0, 0, nil)
}
