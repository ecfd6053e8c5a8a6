package federation

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeTLSFiles writes a CA and a client certificate and key signed by it.
func writeTLSFiles(t *testing.T) (certFile, keyFile, caFile string) {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "etcd CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "strait"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caTmpl, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, typ string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("client.pem", "CERTIFICATE", der), write("client-key.pem", "EC PRIVATE KEY", keyDER),
		write("ca.pem", "CERTIFICATE", caDER)
}

func TestDial(t *testing.T) {
	cert, key, ca := writeTLSFiles(t)
	tests := []struct {
		name    string
		cfg     ClientConfig
		wantErr []string
	}{
		{"defaults", ClientConfig{}, nil},
		{"tls client auth", ClientConfig{Endpoints: []string{"https://127.0.0.1:2379"}, CertFile: cert, KeyFile: key, CAFile: ca}, nil},
		{"every problem", ClientConfig{Endpoints: []string{"http://127.0.0.1:2379", "ftp://x"}, CertFile: cert},
			[]string{"set together", "plain http", "scheme"}},
		{"key does not match", ClientConfig{Endpoints: []string{"https://127.0.0.1:2379"}, CertFile: cert, KeyFile: ca},
			[]string{"client certificate"}},
		{"bad CA", ClientConfig{Endpoints: []string{"https://127.0.0.1:2379"}, CAFile: key}, []string{"no PEM certificate"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cli, err := Dial(tt.cfg)
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				_ = cli.Close()
				return
			}
			if err == nil {
				_ = cli.Close()
				t.Fatal("Dial accepted the config")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}
