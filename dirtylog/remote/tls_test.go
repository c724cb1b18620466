package remote

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// testCA is a certificate authority made in-process.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t testing.TB, name string) *testCA {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

var serial atomic.Int64

// issue makes a leaf certificate for name, usable by a server (with the
// loopback address) or a client.
func (ca *testCA) issue(t testing.TB, name string, server bool) tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(100 + serial.Add(1)),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		tmpl.DNSNames = []string{"localhost"}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	require.NoError(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func startTLSServer(t *testing.T, ca *testCA, trace func(*Header, []byte)) (addr string) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := NewServer(ServerOptions{Logger: testLogger(t), HandshakeTimeout: 2 * time.Second, TLS: &tls.Config{
		Certificates: []tls.Certificate{ca.issue(t, "logserver", true)},
		ClientCAs:    ca.pool,
	}})
	s.trace = trace
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	t.Cleanup(func() { s.Close(); <-done })
	return l.Addr().String()
}

func TestMutualTLS(t *testing.T) {
	checkGoroutines(t)
	ca := newTestCA(t, "dmlog test CA")
	var requests atomic.Int64
	addr := startTLSServer(t, ca, func(*Header, []byte) { requests.Add(1) })
	ctx := context.Background()

	o := coreOpts("tls", 1, "nosync")
	o.TLS = &tls.Config{RootCAs: ca.pool, Certificates: []tls.Certificate{ca.issue(t, "node1", false)}}
	c, err := Dial(ctx, "tcp", addr, o)
	require.NoError(t, err)
	c.MarkRegion(4)
	require.NoError(t, c.Flush(ctx))
	clean, err := c.IsClean(ctx, 4)
	require.NoError(t, err)
	require.False(t, clean)
	require.NoError(t, c.Close())
	require.Positive(t, requests.Load())

	// Peers the server must refuse before reading any request.
	rogue := newTestCA(t, "rogue CA")
	for name, cfg := range map[string]*tls.Config{
		"NoClientCert":    {RootCAs: ca.pool},
		"CertOfOtherCA":   {RootCAs: ca.pool, Certificates: []tls.Certificate{rogue.issue(t, "intruder", false)}},
		"ServerCertAsCli": {RootCAs: ca.pool, Certificates: []tls.Certificate{ca.issue(t, "srv", true)}},
		"TLS12":           {RootCAs: ca.pool, Certificates: []tls.Certificate{ca.issue(t, "old", false)}, MaxVersion: tls.VersionTLS12},
	} {
		t.Run(name, func(t *testing.T) {
			before := requests.Load()
			nc, err := tls.Dial("tcp", addr, cfg)
			if err == nil {
				frame, _ := AppendFrame(nil, Header{Version: Version, Seq: 1, Type: RequestCtr, UUID: "tls"}, []byte("2048 clustered-core 128"))
				nc.Write(frame)
				nc.SetReadDeadline(time.Now().Add(5 * time.Second))
				_, _, err = NewFrameReader(nc).ReadFrame()
				nc.Close()
			}
			require.Error(t, err, "the server answered a peer it must refuse")
			require.Equal(t, before, requests.Load(), "a request from a refused peer was read")
		})
	}

	// A client that does not trust the server's CA refuses it.
	o.TLS = &tls.Config{RootCAs: rogue.pool, Certificates: []tls.Certificate{ca.issue(t, "node1", false)}}
	_, err = Dial(ctx, "tcp", addr, o)
	require.ErrorIs(t, err, ErrUnreachable)
	// And the client insists on a certificate of its own.
	o.TLS = &tls.Config{RootCAs: ca.pool}
	_, err = Dial(ctx, "tcp", addr, o)
	require.ErrorIs(t, err, ErrInsecure)
}

func TestServeTCPNeedsMutualTLS(t *testing.T) {
	checkGoroutines(t)
	ca := newTestCA(t, "ca")
	for name, cfg := range map[string]*tls.Config{
		"NoTLS":       nil,
		"NoClientCAs": {Certificates: []tls.Certificate{ca.issue(t, "s", true)}},
		"NoCert":      {ClientCAs: ca.pool},
	} {
		t.Run(name, func(t *testing.T) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			s := NewServer(ServerOptions{TLS: cfg})
			require.ErrorIs(t, s.Serve(l), ErrInsecure)
			_, err = l.Accept()
			require.Error(t, err, "Serve must close the listener it refuses")
			s.Close()
		})
	}
}
