package bench

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Cert is the peers' PKI, ECDSA P-256 like Strait's SVIDs: a CA, a server
// certificate and a client certificate it signed, written as PEM files for
// stunnel4 and haproxy, which run mutual TLS with verification on both
// sides (as Strait's proxies and gateways do).
type Cert struct {
	// CAFile holds the CA certificate both sides verify the other with.
	CAFile string
	// CertFile and KeyFile hold the server certificate and key; PairFile
	// both, as haproxy wants them.
	CertFile, KeyFile, PairFile string
	// ClientCertFile, ClientKeyFile and ClientPairFile are the same for the
	// client certificate.
	ClientCertFile, ClientKeyFile, ClientPairFile string
	// TLS is the server certificate for Go servers.
	TLS tls.Certificate
}

// SNIName is the server name the peers' client sides send for a route, and
// verify the server certificate against.
func SNIName(route string) string { return route + ".bench" }

// NewCert creates the CA and the certificates in dir. The server
// certificate names localhost and SNIName of every route (no wildcard:
// stunnel's checkHost does not match one).
func NewCert(dir string, routes ...string) (*Cert, error) {
	hosts := []string{"localhost"}
	for _, r := range routes {
		hosts = append(hosts, SNIName(r))
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("bench: cert: %w", err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(now.UnixNano()),
		Subject:               pkix.Name{CommonName: "straitbench CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("bench: cert: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, fmt.Errorf("bench: cert: %w", err)
	}
	c := &Cert{CAFile: filepath.Join(dir, "ca.pem")}
	if err := os.WriteFile(c.CAFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		return nil, fmt.Errorf("bench: cert: %w", err)
	}
	leaf := func(name string, usage x509.ExtKeyUsage, dns []string, ips []net.IP, certFile, keyFile, pairFile *string) (certPEM, keyPEM []byte, err error) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(now.UnixNano() + int64(len(name))),
			Subject:      pkix.Name{CommonName: "straitbench " + name},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
			DNSNames:     dns,
			IPAddresses:  ips,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			return nil, nil, err
		}
		kder, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, nil, err
		}
		certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
		keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
		*certFile = filepath.Join(dir, name+"-cert.pem")
		*keyFile = filepath.Join(dir, name+"-key.pem")
		*pairFile = filepath.Join(dir, name+"-pair.pem")
		for path, data := range map[string][]byte{
			*certFile: certPEM, *keyFile: keyPEM, *pairFile: append(append([]byte{}, certPEM...), keyPEM...),
		} {
			if err := os.WriteFile(path, data, 0o600); err != nil {
				return nil, nil, err
			}
		}
		return certPEM, keyPEM, nil
	}
	certPEM, keyPEM, err := leaf("server", x509.ExtKeyUsageServerAuth, hosts, []net.IP{net.IPv4(127, 0, 0, 1)},
		&c.CertFile, &c.KeyFile, &c.PairFile)
	if err != nil {
		return nil, fmt.Errorf("bench: cert: %w", err)
	}
	if _, _, err := leaf("client", x509.ExtKeyUsageClientAuth, []string{"client.bench"}, nil,
		&c.ClientCertFile, &c.ClientKeyFile, &c.ClientPairFile); err != nil {
		return nil, fmt.Errorf("bench: cert: %w", err)
	}
	if c.TLS, err = tls.X509KeyPair(certPEM, keyPEM); err != nil {
		return nil, fmt.Errorf("bench: cert: %w", err)
	}
	return c, nil
}
