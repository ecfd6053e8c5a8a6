package check

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
)

// loadCertOnly reads the first certificate of a PEM file.
func loadCertOnly(path string) (tls.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("check: %w", err)
	}
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return tls.Certificate{}, fmt.Errorf("check: %s holds no certificate", path)
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		leaf, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("check: %s: %w", path, err)
		}
		return tls.Certificate{Certificate: [][]byte{b.Bytes}, Leaf: leaf}, nil
	}
}
