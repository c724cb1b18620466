package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/dmlog/dmlog/internal/unixsock"
)

// endpoint is a parsed -listen or -control value.
type endpoint struct {
	network, addr string
}

func parseEndpoint(flagName, s string, tcpOK bool) (endpoint, error) {
	network, addr, ok := strings.Cut(s, ":")
	switch {
	case !ok || addr == "":
	case network == "unix":
		return endpoint{network, addr}, nil
	case network == "tcp" && tcpOK:
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return endpoint{}, usagef("-%s %q: %v", flagName, s, err)
		}
		_ = host
		return endpoint{network, addr}, nil
	}
	if tcpOK {
		return endpoint{}, usagef("-%s %q: want unix:PATH or tcp:HOST:PORT", flagName, s)
	}
	return endpoint{}, usagef("-%s %q: want unix:PATH", flagName, s)
}

// loopback says whether a tcp address only listens on this machine.
func (e endpoint) loopback() bool {
	host, _, _ := net.SplitHostPort(e.addr)
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (e endpoint) listen() (net.Listener, error) {
	if e.network == "unix" {
		return unixsock.Listen("nbd-server", e.addr)
	}
	return net.Listen("tcp", e.addr)
}

// tlsConfig loads the server certificate and, if caFile is set, requires
// client certificates signed by it (mutual TLS, as logserver).
func tlsConfig(certFile, keyFile, caFile string) (*tls.Config, error) {
	if certFile == "" && keyFile == "" && caFile == "" {
		return nil, nil
	}
	if certFile == "" || keyFile == "" {
		return nil, usagef("TLS needs both -tls-cert and -tls-key")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("loading the server certificate: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("reading -tls-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("-tls-ca " + caFile + " holds no PEM certificate")
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}
