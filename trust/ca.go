package trust

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Defaults of CAConfig.
const (
	DefaultRootTTL = 365 * 24 * time.Hour
	DefaultSVIDTTL = time.Hour
)

// CAConfig configures the built-in certificate authority.
type CAConfig struct {
	// TrustDomain is the trust domain the CA signs for. Required.
	TrustDomain spiffeid.TrustDomain
	// RootTTL is the lifetime of a new root. Zero means DefaultRootTTL.
	RootTTL time.Duration
	// Now is the clock. Zero means time.Now.
	Now func() time.Time
}

// CA is Strait's built-in certificate authority for one trust domain: an
// ECDSA P-256 root that signs short-lived X.509 SVIDs. It is safe for
// concurrent use.
type CA struct {
	td      spiffeid.TrustDomain
	rootTTL time.Duration
	now     func() time.Time

	mu    sync.Mutex
	roots []*authority // the newest signs; older ones stay trusted until dropped
}

type authority struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// NewCA creates a CA with a fresh root.
func NewCA(cfg CAConfig) (*CA, error) {
	if cfg.TrustDomain.IsZero() {
		return nil, errors.New("trust: CA needs a trust domain")
	}
	ca := &CA{td: cfg.TrustDomain, rootTTL: cfg.RootTTL, now: cfg.Now}
	if ca.rootTTL == 0 {
		ca.rootTTL = DefaultRootTTL
	}
	if ca.now == nil {
		ca.now = time.Now
	}
	root, err := ca.newRoot()
	if err != nil {
		return nil, err
	}
	ca.roots = []*authority{root}
	return ca, nil
}

// TrustDomain is the CA's trust domain.
func (c *CA) TrustDomain() spiffeid.TrustDomain { return c.td }

func (c *CA) newRoot() (*authority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("trust: generate root key: %w", err)
	}
	now := c.now()
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{Organization: []string{"Strait"}, CommonName: "Strait root " + c.td.Name()},
		URIs:                  []*url.URL{c.td.ID().URL()},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(c.rootTTL),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("trust: create root: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("trust: parse root: %w", err)
	}
	return &authority{cert: cert, key: key}, nil
}

// Roots returns the CA's root certificates, oldest first.
func (c *CA) Roots() []*x509.Certificate {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*x509.Certificate, len(c.roots))
	for i, r := range c.roots {
		out[i] = r.cert
	}
	return out
}

// Bundle returns the CA's roots as an X.509 bundle.
func (c *CA) Bundle() *x509bundle.Bundle {
	return x509bundle.FromX509Authorities(c.td, c.Roots())
}

// IssueX509SVID signs a new SVID for id, valid for ttl (zero means
// DefaultSVIDTTL), with the newest root.
func (c *CA) IssueX509SVID(id spiffeid.ID, ttl time.Duration) (*x509svid.SVID, error) {
	if !id.MemberOf(c.td) {
		return nil, fmt.Errorf("trust: CA of %s cannot sign %s", c.td, id)
	}
	if ttl == 0 {
		ttl = DefaultSVIDTTL
	}
	c.mu.Lock()
	signer := c.roots[len(c.roots)-1]
	c.mu.Unlock()

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("trust: generate SVID key: %w", err)
	}
	now := c.now()
	notAfter := now.Add(ttl)
	if notAfter.After(signer.cert.NotAfter) {
		notAfter = signer.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{Organization: []string{"Strait"}},
		URIs:                  []*url.URL{id.URL()},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageKeyAgreement,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer.cert, key.Public(), signer.key)
	if err != nil {
		return nil, fmt.Errorf("trust: sign SVID for %s: %w", id, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("trust: parse SVID for %s: %w", id, err)
	}
	return &x509svid.SVID{ID: id, Certificates: []*x509.Certificate{cert}, PrivateKey: key}, nil
}

func randomSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(fmt.Sprintf("trust: crypto/rand failed: %v", err))
	}
	return n
}
