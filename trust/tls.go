package trust

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/hashicorp/go-multierror"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// TLSConfig is what an mTLS configuration is built from.
type TLSConfig struct {
	// SVID is the source of the certificate this side presents. It is asked
	// at every handshake, so a rotated SVID is used at once. Required.
	SVID x509svid.Source
	// Bundles is the source of the bundles peers are verified against, one
	// per trust domain (a *BundleStore), asked at every handshake. Required.
	Bundles x509bundle.Source
	// Authorizer decides which authenticated peers are accepted: a
	// ConsumerPolicy's Authorizer, AuthorizeTrustDomains, AuthorizeID, or
	// tlsconfig.AuthorizeAny(). Required.
	Authorizer tlsconfig.Authorizer
	// Now is the clock peer certificates are verified against. Zero means
	// time.Now.
	Now func() time.Time
	// Metrics counts refused peers by reason. Zero means no metrics.
	Metrics *Metrics
}

func (c *TLSConfig) validate() error {
	var errs *multierror.Error
	if c.SVID == nil {
		errs = multierror.Append(errs, errors.New("SVID source is required"))
	}
	if c.Bundles == nil {
		errs = multierror.Append(errs, errors.New("bundle source is required"))
	}
	if c.Authorizer == nil {
		errs = multierror.Append(errs, errors.New("authorizer is required"))
	}
	if err := errs.ErrorOrNil(); err != nil {
		return fmt.Errorf("trust: TLS config: %w", err)
	}
	return nil
}

// ServerTLSConfig returns the configuration of an mTLS server: it presents
// the current SVID, requires a client SVID, verifies it against the bundle of
// the client's own trust domain and authorizes it. TLS 1.3 only; session
// tickets are disabled, and verification runs on every connection, resumed
// or not, so that no session survives a change of bundles (CVE-2022-21654).
// Callers may set NextProtos and similar fields.
func ServerTLSConfig(cfg TLSConfig) (*tls.Config, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	conf := tlsconfig.MTLSServerConfig(cfg.SVID, cfg.Bundles, cfg.Authorizer)
	harden(conf, cfg, x509.ExtKeyUsageClientAuth)
	return conf, nil
}

// ClientTLSConfig returns the configuration of an mTLS client: it presents
// the current SVID when asked, verifies the server's SVID against the bundle
// of the server's own trust domain and authorizes it. TLS 1.3 only, no
// session resumption. Set ServerName to route by SNI; it is not used to
// verify the server, whose SPIFFE ID is.
func ClientTLSConfig(cfg TLSConfig) (*tls.Config, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	conf := tlsconfig.MTLSClientConfig(cfg.SVID, cfg.Bundles, cfg.Authorizer)
	harden(conf, cfg, x509.ExtKeyUsageServerAuth)
	conf.ClientSessionCache = nil
	return conf, nil
}

// harden makes conf TLS 1.3 only, without session tickets, and verifying
// peers whose leaf, if it names extended key usages, allows peerUsage.
func harden(conf *tls.Config, cfg TLSConfig, peerUsage x509.ExtKeyUsage) {
	conf.MinVersion = tls.VersionTLS13
	conf.SessionTicketsDisabled = true
	// Verify in VerifyConnection, which crypto/tls calls on every
	// connection, resumed ones included, rather than in
	// VerifyPeerCertificate, which it skips on resumption: should a caller
	// enable session tickets again, a resumed session is still checked
	// against the current bundles.
	conf.VerifyPeerCertificate = nil
	conf.VerifyConnection = peerVerifier(cfg, peerUsage)
}

// peerVerifier checks the peer's chain the way tlsconfig does
// (x509svid.Verify against the peer's trust domain's bundle, then the
// authorizer), with the configured clock, after checks of its own that give
// typed errors for certificates that cannot be SVIDs. Every refusal is
// counted by reason and returned as a *PeerRefusedError.
func peerVerifier(cfg TLSConfig, usage x509.ExtKeyUsage) func(tls.ConnectionState) error {
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	return func(state tls.ConnectionState) error {
		// crypto/tls has parsed the chain; a chain it cannot parse never
		// gets here.
		at := now()
		if err := verifyPeer(state.PeerCertificates, usage, cfg.Bundles, cfg.Authorizer, at); err != nil {
			refused := refusal(state.PeerCertificates, err, at)
			cfg.Metrics.observeHandshakeFailure(refused.Reason)
			return refused
		}
		return nil
	}
}

func verifyPeer(certs []*x509.Certificate, usage x509.ExtKeyUsage, bundles x509bundle.Source, authorize tlsconfig.Authorizer, now time.Time) error {
	if err := checkLeaf(certs, usage); err != nil {
		return err
	}
	id, chains, err := x509svid.Verify(certs, bundles, x509svid.WithTime(now))
	if err != nil {
		return fmt.Errorf("trust: peer %s: %w", id, err)
	}
	return authorize(id, chains)
}

// checkLeaf refuses, with *BadCertificateError, a chain whose leaf cannot
// be an X.509 SVID: not exactly one URI SAN holding a SPIFFE ID (Consul
// CVE-2022-40716), a CA certificate, a signing key usage, or extended key
// usages that do not include usage (Envoy CVE-2022-21657; a leaf without
// extended key usages is accepted, as the X509-SVID specification allows).
func checkLeaf(certs []*x509.Certificate, usage x509.ExtKeyUsage) error {
	if len(certs) == 0 {
		return &BadCertificateError{Problem: ProblemNoCertificate}
	}
	leaf := certs[0]
	switch {
	case len(leaf.URIs) == 0:
		return &BadCertificateError{Problem: ProblemNoSPIFFEID}
	case len(leaf.URIs) > 1:
		return &BadCertificateError{Problem: ProblemManyURISANs}
	case leaf.IsCA:
		return &BadCertificateError{Problem: ProblemCAAsLeaf}
	case leaf.KeyUsage&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign) != 0:
		return &BadCertificateError{Problem: ProblemSigningKeyUsage}
	case len(leaf.ExtKeyUsage) > 0 && !slices.Contains(leaf.ExtKeyUsage, usage) &&
		!slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageAny):
		return &BadCertificateError{Problem: ProblemExtKeyUsage}
	}
	if _, err := spiffeid.FromURI(leaf.URIs[0]); err != nil {
		return &BadCertificateError{Problem: ProblemInvalidSPIFFEID, Err: err}
	}
	return nil
}

// PeerID returns the SPIFFE ID of the peer of a completed handshake.
func PeerID(state tls.ConnectionState) (spiffeid.ID, error) {
	if len(state.PeerCertificates) == 0 {
		return spiffeid.ID{}, &BadCertificateError{Problem: ProblemNoCertificate}
	}
	id, err := x509svid.IDFromCert(state.PeerCertificates[0])
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("trust: peer ID: %w", err)
	}
	return id, nil
}

// PeerExpiry returns when the peer's authentication of a completed
// handshake runs out: the earliest NotAfter of the certificates it
// presented. Connection owners close connections that outlive it (T15:
// a connection must not outlast the certificate it was authenticated with).
func PeerExpiry(state tls.ConnectionState) time.Time {
	var earliest time.Time
	for _, c := range state.PeerCertificates {
		if earliest.IsZero() || c.NotAfter.Before(earliest) {
			earliest = c.NotAfter
		}
	}
	return earliest
}
