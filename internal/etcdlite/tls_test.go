package etcdlite

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// testPKI is a CA with a server certificate for 127.0.0.1 and a client
// certificate, as PEM files for etcd and as a tls.Config for the client.
type testPKI struct {
	caFile, certFile, keyFile string
	client                    *tls.Config
}

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "etcdlite test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	issue := func(serial int64, usage x509.ExtKeyUsage, ips []net.IP) ([]byte, *ecdsa.PrivateKey) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "etcdlite test"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: ips,
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, KeyUsage: x509.KeyUsageDigitalSignature}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, key
	}
	write := func(name, typ string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	serverDER, serverKey := issue(2, x509.ExtKeyUsageServerAuth, []net.IP{net.IPv4(127, 0, 0, 1)})
	serverKeyDER, err := x509.MarshalECPrivateKey(serverKey)
	if err != nil {
		t.Fatal(err)
	}
	clientDER, clientKey := issue(3, x509.ExtKeyUsageClientAuth, nil)
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	return testPKI{
		caFile: write("ca.pem", "CERTIFICATE", caDER), certFile: write("server.pem", "CERTIFICATE", serverDER),
		keyFile: write("server-key.pem", "EC PRIVATE KEY", serverKeyDER),
		client: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12,
			Certificates: []tls.Certificate{{Certificate: [][]byte{clientDER}, PrivateKey: clientKey}}},
	}
}

// Over TLS with client certificates: calls and watches work, and the client
// verifies the member's certificate against its roots (another CA's roots
// fail the call).
func TestTLSClientAuth(t *testing.T) {
	pki := newTestPKI(t)
	e := startEtcdWith(t, "https", []string{"--cert-file", pki.certFile, "--key-file", pki.keyFile,
		"--trusted-ca-file", pki.caFile, "--client-cert-auth"}, pki.client)
	cli := e.lite()
	ctx := testCtx(t, time.Minute)
	wch := cli.Watch(WithRequireLeader(ctx), "/tls/", WithPrefix())
	if _, err := cli.Put(ctx, "/tls/k", "v"); err != nil {
		t.Fatal(err)
	}
	if evs := watchEvents(t, wch, 1); string(evs[0].Kv.Value) != "v" {
		t.Errorf("watch over TLS: %s", describe(evs))
	}

	other := newTestPKI(t)
	bad, err := New(Config{Endpoints: []string{e.curl}, TLS: other.client})
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := bad.Get(short, "/tls/k"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("read with another CA's roots: %v, want the call to wait for a connection it cannot make", err)
	}
}
