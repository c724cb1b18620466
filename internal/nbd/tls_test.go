package nbd

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"io"
	"math/big"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

func isBadExport(err error) bool { return errors.Is(err, ErrBadExport) }

func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "nbd-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"localhost"}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}

func TestStartTLS(t *testing.T) {
	cert, pool := selfSigned(t)
	dev := newMemDev(1 << 16)
	_, addr := startServer(t, Options{TLS: &tls.Config{Certificates: []tls.Certificate{cert}}}, Export{Size: 1 << 16, Dev: dev})

	// Before STARTTLS: options are refused with NBD_REP_ERR_TLS_REQD, and
	// NBD_OPT_EXPORT_NAME closes the connection.
	nc, r := dialRaw(t, addr)
	nc.Write(binary.BigEndian.AppendUint32(nil, flagFixedNewstyle|flagNoZeroes))
	sendOpt(t, nc, optGo, infoData(""))
	if rep := readOptReply(t, r); rep.typ != repErrTLSReqd {
		t.Fatalf("GO before STARTTLS: %+v", rep)
	}
	sendOpt(t, nc, optStartTLS, nil)
	if rep := readOptReply(t, r); rep.typ != repAck {
		t.Fatalf("STARTTLS: %+v", rep)
	}
	tc := tls.Client(nc, &tls.Config{RootCAs: pool, ServerName: "localhost"})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	tr := bufio.NewReader(tc)
	sendOpt(t, tc, optGo, infoData(""))
	for {
		rep := readOptReply(t, tr)
		if rep.typ == repAck {
			break
		}
		if rep.typ != repInfo {
			t.Fatalf("GO after STARTTLS: %+v", rep)
		}
	}
	c := &testClient{t: t, nc: tc, r: tr}
	if e, _ := c.do(cmdWrite, 0, 0, 5, []byte("hello")); e != 0 {
		t.Fatalf("write over TLS: errno %d", e)
	}
	if string(dev.bytes()[:5]) != "hello" {
		t.Fatal("write over TLS not on the device")
	}

	nc2, r2 := dialRaw(t, addr)
	nc2.Write(binary.BigEndian.AppendUint32(nil, flagFixedNewstyle))
	sendOpt(t, nc2, optExportName, nil)
	if _, err := r2.ReadByte(); err == nil {
		t.Fatal("NBD_OPT_EXPORT_NAME without TLS was answered")
	}
}

func TestStartTLSUnsupportedWithoutConfig(t *testing.T) {
	_, addr := startServer(t, Options{}, Export{Size: 4096, Dev: newMemDev(4096)})
	nc, r := dialRaw(t, addr)
	nc.Write(binary.BigEndian.AppendUint32(nil, flagFixedNewstyle))
	sendOpt(t, nc, optStartTLS, nil)
	if rep := readOptReply(t, r); rep.typ != repErrUnsup {
		t.Fatalf("STARTTLS without TLS: %+v", rep)
	}
	var _ net.Conn = nc
}

// countingConn counts the bytes read from a connection.
type countingConn struct {
	net.Conn
	n atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// At NBD_CMD_DISC the server shuts the TLS session down (a close_notify
// alert) before closing the connection.
func TestDisconnectShutsDownTLS(t *testing.T) {
	cert, pool := selfSigned(t)
	_, addr := startServer(t, Options{TLS: &tls.Config{Certificates: []tls.Certificate{cert}}}, Export{Size: 1 << 16, Dev: newMemDev(1 << 16)})
	nc, r := dialRaw(t, addr)
	nc.Write(binary.BigEndian.AppendUint32(nil, flagFixedNewstyle|flagNoZeroes))
	sendOpt(t, nc, optStartTLS, nil)
	if rep := readOptReply(t, r); rep.typ != repAck {
		t.Fatalf("STARTTLS: %+v", rep)
	}
	cc := &countingConn{Conn: nc}
	tc := tls.Client(cc, &tls.Config{RootCAs: pool, ServerName: "localhost"})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	tr := bufio.NewReader(tc)
	sendOpt(t, tc, optGo, infoData(""))
	for rep := readOptReply(t, tr); rep.typ != repAck; rep = readOptReply(t, tr) {
	}
	c := &testClient{t: t, nc: tc, r: tr}
	if e, _ := c.do(cmdFlush, 0, 0, 0, nil); e != 0 {
		t.Fatalf("flush errno %d", e)
	}
	before := cc.n.Load()
	c.disconnect()
	if n, err := io.Copy(io.Discard, tr); n != 0 || err != nil {
		t.Fatalf("after NBD_CMD_DISC: %d bytes, %v; want a clean end", n, err)
	}
	if cc.n.Load() == before {
		t.Fatal("the server closed the connection without shutting the TLS session down (no close_notify)")
	}
}

// Bytes sent after NBD_OPT_STARTTLS but before its reply cannot be part of
// the TLS handshake: the server closes the connection rather than guess.
func TestStartTLSRefusesPipelinedData(t *testing.T) {
	cert, _ := selfSigned(t)
	_, addr := startServer(t, Options{TLS: &tls.Config{Certificates: []tls.Certificate{cert}}}, Export{Size: 4096, Dev: newMemDev(4096)})
	nc, r := dialRaw(t, addr)
	nc.SetDeadline(time.Now().Add(5 * time.Second)) // a server waiting for the rest of a TLS record fails fast
	msg := binary.BigEndian.AppendUint32(nil, flagFixedNewstyle|flagNoZeroes)
	msg = binary.BigEndian.AppendUint64(msg, magicOpt)
	msg = binary.BigEndian.AppendUint32(msg, optStartTLS)
	msg = binary.BigEndian.AppendUint32(msg, 0)
	msg = append(msg, "plaintext after STARTTLS"...)
	if _, err := nc.Write(msg); err != nil {
		t.Fatal(err)
	}
	if rep := readOptReply(t, r); rep.typ != repAck {
		t.Fatalf("STARTTLS: %+v", rep)
	}
	if n, err := io.Copy(io.Discard, r); n != 0 || err != nil {
		t.Fatalf("after pipelined data: %d bytes, %v; want the connection closed", n, err)
	}
}
