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

	"github.com/hashicorp/go-multierror"
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
	// Dir keeps the roots (certificate and 0600 private key) and the rotation
	// state on disk. Processes may share it: NewCA holds an advisory lock
	// on the directory (flock) while it loads them when present or creates a
	// root otherwise, and every write of it holds the lock too. Zero
	// means in memory only: a restart makes a new root.
	Dir string
	// Now is the clock. Zero means time.Now.
	Now func() time.Time
}

func (c *CAConfig) validate() error {
	var errs *multierror.Error
	if c.TrustDomain.IsZero() {
		errs = multierror.Append(errs, errors.New("CA needs a trust domain"))
	}
	if c.RootTTL < 0 {
		errs = multierror.Append(errs, fmt.Errorf("negative RootTTL %s", c.RootTTL))
	}
	if err := errs.ErrorOrNil(); err != nil {
		return fmt.Errorf("trust: CA config: %w", err)
	}
	return nil
}

func (c *CAConfig) populate() {
	if c.RootTTL == 0 {
		c.RootTTL = DefaultRootTTL
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// CA is Strait's built-in certificate authority for one trust domain: an
// ECDSA P-256 root that signs short-lived X.509 SVIDs. It is safe for
// concurrent use.
//
// Root rotation happens in three steps, each a method:
//
//  1. PrepareRoot makes a new root and publishes it in Bundle beside the old
//     one. It signs nothing yet: give peers time to learn it.
//  2. ActivateRoot makes the prepared root sign every new SVID.
//  3. DropRoot removes the old root from the bundle, and refuses to while an
//     SVID it signed is still valid.
type CA struct {
	td      spiffeid.TrustDomain
	rootTTL time.Duration
	now     func() time.Time
	dir     string
	changed notifier

	mu     sync.Mutex
	roots  []*authority // trusted roots, oldest first
	active int          // index in roots of the root that signs
}

type authority struct {
	cert *x509.Certificate
	key  crypto.Signer
	// issuedUntil is the latest NotAfter of an SVID the root signed (or, after
	// a restart, the persisted upper bound of it).
	issuedUntil time.Time
	// persistedUntil is the issuedUntil bound last written to disk.
	persistedUntil time.Time
}

// NewCA creates a CA. With a Dir it loads the roots kept there, or creates
// one and saves it; without, it creates a fresh root in memory.
func NewCA(cfg CAConfig) (*CA, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.populate()
	ca := &CA{td: cfg.TrustDomain, rootTTL: cfg.RootTTL, now: cfg.Now, dir: cfg.Dir}
	if ca.dir != "" {
		// Processes that share the directory (a node's gateway replicas
		// and sidecars mount it from the host) create one root between
		// them: the first to hold the lock creates it, the others load it.
		unlock, err := lockDir(ca.dir)
		if err != nil {
			return nil, err
		}
		defer unlock()
		loaded, err := ca.load()
		if err != nil {
			return nil, err
		}
		if loaded {
			return ca, nil
		}
	}
	root, err := ca.newRoot()
	if err != nil {
		return nil, err
	}
	ca.roots = []*authority{root}
	if ca.dir != "" {
		// Under the directory lock NewCA holds.
		ca.mu.Lock()
		err = ca.writeAllLocked()
		ca.mu.Unlock()
		if err != nil {
			return nil, err
		}
	}
	return ca, nil
}

// TrustDomain is the CA's trust domain.
func (c *CA) TrustDomain() spiffeid.TrustDomain { return c.td }

// Changed returns a channel that is closed at the next change of the CA's
// roots (prepared, activated or dropped).
func (c *CA) Changed() <-chan struct{} { return c.changed.Changed() }

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

// Roots returns the CA's trusted root certificates, oldest first: the active
// root, any root prepared after it, and any older root not dropped yet.
func (c *CA) Roots() []*x509.Certificate {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*x509.Certificate, len(c.roots))
	for i, r := range c.roots {
		out[i] = r.cert
	}
	return out
}

// ActiveRoot returns the root that signs new SVIDs.
func (c *CA) ActiveRoot() *x509.Certificate {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.roots[c.active].cert
}

// Bundle returns the CA's roots as an X.509 bundle.
func (c *CA) Bundle() *x509bundle.Bundle {
	return x509bundle.FromX509Authorities(c.td, c.Roots())
}

// GetX509BundleForTrustDomain implements x509bundle.Source for the CA's own
// trust domain.
func (c *CA) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	if td != c.td {
		return nil, &UnknownTrustDomainError{TrustDomain: td}
	}
	return c.Bundle(), nil
}

// IssueX509SVID signs a new SVID for id, valid for ttl (zero means
// DefaultSVIDTTL), with the active root.
func (c *CA) IssueX509SVID(id spiffeid.ID, ttl time.Duration) (*x509svid.SVID, error) {
	if !id.MemberOf(c.td) {
		return nil, fmt.Errorf("trust: CA of %s cannot sign %s", c.td, id)
	}
	if ttl == 0 {
		ttl = DefaultSVIDTTL
	}
	if ttl < 0 {
		return nil, fmt.Errorf("trust: negative SVID TTL %s", ttl)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("trust: generate SVID key: %w", err)
	}

	// Hold the lock while signing so that no SVID is signed by a root that
	// DropRoot has just judged unused.
	c.mu.Lock()
	defer c.mu.Unlock()
	signer := c.roots[c.active]
	now := c.now()
	if !now.Before(signer.cert.NotAfter) {
		return nil, fmt.Errorf("%w: it expired at %s", ErrRootExpired, signer.cert.NotAfter.UTC().Format(time.RFC3339))
	}
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
	if err := c.recordIssuedLocked(signer, cert.NotAfter); err != nil {
		return nil, err
	}
	return &x509svid.SVID{ID: id, Certificates: []*x509.Certificate{cert}, PrivateKey: key}, nil
}

// recordIssuedLocked remembers the latest expiry a root signed. On disk it
// keeps an upper bound one DefaultSVIDTTL ahead so that issuing does not
// write a file every time.
func (c *CA) recordIssuedLocked(a *authority, notAfter time.Time) error {
	if notAfter.After(a.issuedUntil) {
		a.issuedUntil = notAfter
	}
	if c.dir == "" || !a.issuedUntil.After(a.persistedUntil) {
		return nil
	}
	prev := a.persistedUntil
	a.persistedUntil = a.issuedUntil.Add(DefaultSVIDTTL)
	if err := c.saveStateLocked(); err != nil {
		a.persistedUntil = prev
		return err
	}
	return nil
}

// PrepareRoot creates a new root and adds it to the bundle beside the current
// one, without signing anything with it. Publish the bundle and wait until
// peers have it before ActivateRoot. It fails with ErrRootPending while a
// prepared root is not active yet.
func (c *CA) PrepareRoot() (*x509.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.active != len(c.roots)-1 {
		return nil, ErrRootPending
	}
	root, err := c.newRoot()
	if err != nil {
		return nil, err
	}
	c.roots = append(c.roots, root)
	if err := c.saveLocked(); err != nil {
		c.roots = c.roots[:len(c.roots)-1]
		return nil, err
	}
	c.changed.notify()
	return root.cert, nil
}

// ActivateRoot makes the prepared root sign every new SVID. The previous
// root stays in the bundle until DropRoot. It fails with ErrNoPreparedRoot
// when no root is prepared.
func (c *CA) ActivateRoot() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.active == len(c.roots)-1 {
		return ErrNoPreparedRoot
	}
	prev := c.active
	c.active = len(c.roots) - 1
	if err := c.saveStateLocked(); err != nil {
		c.active = prev
		return err
	}
	c.changed.notify()
	return nil
}

// DropRoot removes a root that no longer signs from the bundle. It refuses
// the active root (ErrRootActive), a root the CA does not hold
// (ErrUnknownRoot), and a root that signed an SVID still valid by the CA's
// clock (*RootInUseError, matching ErrRootInUse).
func (c *CA) DropRoot(root *x509.Certificate) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	i := c.indexLocked(root)
	switch {
	case i < 0:
		return fmt.Errorf("%w: serial %x", ErrUnknownRoot, root.SerialNumber)
	case i == c.active:
		return fmt.Errorf("%w: serial %x", ErrRootActive, root.SerialNumber)
	}
	a := c.roots[i]
	if now := c.now(); !now.After(a.issuedUntil) {
		return &RootInUseError{Serial: fmt.Sprintf("%x", a.cert.SerialNumber), Until: a.issuedUntil}
	}
	prevRoots, prevActive := c.roots, c.active
	c.roots = append(append([]*authority(nil), c.roots[:i]...), c.roots[i+1:]...)
	if c.active > i {
		c.active--
	}
	if err := c.saveLocked(); err != nil {
		c.roots, c.active = prevRoots, prevActive
		return err
	}
	if c.dir != "" {
		c.removeRootFile(a)
	}
	c.changed.notify()
	return nil
}

func (c *CA) indexLocked(root *x509.Certificate) int {
	for i, a := range c.roots {
		if a.cert.Equal(root) {
			return i
		}
	}
	return -1
}

func randomSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(fmt.Sprintf("trust: crypto/rand failed: %v", err))
	}
	return n
}
