package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dmlog/dmlog/dirtylog/remote"
)

// writeCerts writes a CA, a server and a client certificate as PEM files.
func writeCerts(t *testing.T, dir string) (clientCfg *tls.Config) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	caCert, _ := x509.ParseCertificate(caDER)
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	leaf := func(n int64, usage x509.ExtKeyUsage) ([]byte, *ecdsa.PrivateKey) {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		tm := &x509.Certificate{SerialNumber: big.NewInt(n), Subject: pkix.Name{CommonName: "leaf"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
		der, err := x509.CreateCertificate(rand.Reader, tm, caCert, &k.PublicKey, caKey)
		require.NoError(t, err)
		return der, k
	}
	write := func(name, typ string, b []byte) {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600))
	}
	write("ca.pem", "CERTIFICATE", caDER)
	sDER, sKey := leaf(2, x509.ExtKeyUsageServerAuth)
	write("srv.pem", "CERTIFICATE", sDER)
	kb, err := x509.MarshalECPrivateKey(sKey)
	require.NoError(t, err)
	write("srv.key", "EC PRIVATE KEY", kb)
	cDER, cKey := leaf(3, x509.ExtKeyUsageClientAuth)
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{{Certificate: [][]byte{cDER}, PrivateKey: cKey}}}
}

func TestServeTCPWithMutualTLS(t *testing.T) {
	dir := t.TempDir()
	cfg := writeCerts(t, dir)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr syncBuf
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-listen", "tcp:127.0.0.1:0", "-tls-cert", filepath.Join(dir, "srv.pem"),
			"-tls-key", filepath.Join(dir, "srv.key"), "-tls-ca", filepath.Join(dir, "ca.pem")}, io.Discard, &stderr, ready)
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatal(err)
	}
	c, err := remote.Dial(ctx, "tcp", addr, remote.ClientOptions{UUID: "v", Node: 1, DeviceSize: 1 << 30,
		Args: []string{"clustered-core", "1024"}, TLS: cfg})
	require.NoError(t, err)
	c.MarkRegion(1)
	require.NoError(t, c.Flush(ctx))
	require.NoError(t, c.Close())

	// Without a client certificate: refused.
	nc, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: cfg.RootCAs})
	if err == nil {
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		nc.Write([]byte("DMUL"))
		_, err = nc.Read(make([]byte, 1))
		nc.Close()
	}
	require.Error(t, err)
	cancel()
	require.NoError(t, <-done)
	require.Contains(t, stderr.String(), "TLS handshake refused")
}
