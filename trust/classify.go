package trust

import (
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// HandshakeFailureReason is the closed set of reasons a handshake is refused
// for, the label of strait_trust_handshake_failures_total.
type HandshakeFailureReason string

// The reasons, from ClassifyHandshakeError.
const (
	// ReasonExpired: the peer's certificate or a CA in its chain is past
	// its NotAfter.
	ReasonExpired HandshakeFailureReason = "expired"
	// ReasonNotYetValid: the peer's certificate or a CA in its chain is
	// before its NotBefore (a clock skew between the peer's CA and this
	// side, or a certificate issued for later).
	ReasonNotYetValid HandshakeFailureReason = "not_yet_valid"
	// ReasonUntrustedDomain: there is no bundle for the peer's trust domain,
	// or its chain does not lead to an authority of that bundle.
	ReasonUntrustedDomain HandshakeFailureReason = "untrusted_domain"
	// ReasonBadCertificate: the peer's certificate cannot be an X.509 SVID
	// (no or several URI SANs, a CA as leaf, unparsable, bad constraints).
	ReasonBadCertificate HandshakeFailureReason = "bad_certificate"
	// ReasonUnauthorized: the peer is authenticated but a policy refuses it.
	ReasonUnauthorized HandshakeFailureReason = "unauthorized"
	// ReasonUnexpectedServer: the server is authenticated but is not the
	// identity the client dialed (UnexpectedServerError): not the endpoint's
	// SPIFFE ID, or not one the export allows to serve it.
	ReasonUnexpectedServer HandshakeFailureReason = "unexpected_server"
	// ReasonOther: anything else (network errors, no local SVID, ...).
	ReasonOther HandshakeFailureReason = "other"
)

// HandshakeFailureReasons lists every reason.
func HandshakeFailureReasons() []HandshakeFailureReason {
	return []HandshakeFailureReason{ReasonExpired, ReasonNotYetValid, ReasonUntrustedDomain, ReasonBadCertificate, ReasonUnauthorized, ReasonUnexpectedServer, ReasonOther}
}

// ClassifyHandshakeError tells why a handshake was refused, from the types
// of the errors err wraps (this package's, crypto/x509's), never from
// message text. A nil error is ReasonOther. A *PeerRefusedError gives the
// reason it was refused for; otherwise a certificate outside its validity
// period is judged against the current time.
func ClassifyHandshakeError(err error) HandshakeFailureReason {
	var refused *PeerRefusedError
	if errors.As(err, &refused) {
		return refused.Reason
	}
	return classifyAt(err, time.Now())
}

// classifyAt is ClassifyHandshakeError with the clock the certificates were
// verified against.
func classifyAt(err error, now time.Time) HandshakeFailureReason {
	var (
		unauthorized *UnauthorizedError
		unexpected   *UnexpectedServerError
		unknownTD    *UnknownTrustDomainError
		badCert      *BadCertificateError
		invalid      x509.CertificateInvalidError
		unknownCA    x509.UnknownAuthorityError
		critical     x509.UnhandledCriticalExtension
		constraint   x509.ConstraintViolationError
		structural   asn1.StructuralError
		syntax       asn1.SyntaxError
	)
	switch {
	case err == nil:
		return ReasonOther
	case errors.As(err, &unexpected):
		return ReasonUnexpectedServer
	case errors.As(err, &unauthorized):
		return ReasonUnauthorized
	case errors.As(err, &badCert):
		return ReasonBadCertificate
	case errors.As(err, &unknownTD):
		return ReasonUntrustedDomain
	case errors.As(err, &invalid):
		if invalid.Reason == x509.Expired {
			// crypto/x509 says Expired on both sides of the validity
			// period.
			if invalid.Cert != nil && now.Before(invalid.Cert.NotBefore) {
				return ReasonNotYetValid
			}
			return ReasonExpired
		}
		return ReasonBadCertificate
	case errors.As(err, &unknownCA):
		return ReasonUntrustedDomain
	case errors.As(err, &critical), errors.As(err, &constraint),
		errors.As(err, &structural), errors.As(err, &syntax):
		return ReasonBadCertificate
	}
	return ReasonOther
}

// refusal makes the error a verifier returns for a refused peer: err with
// the reason judged at now and the SPIFFE ID the peer's leaf claims.
func refusal(certs []*x509.Certificate, err error, now time.Time) *PeerRefusedError {
	r := &PeerRefusedError{Reason: classifyAt(err, now), Err: err}
	if len(certs) > 0 && len(certs[0].URIs) == 1 {
		if id, perr := spiffeid.FromURI(certs[0].URIs[0]); perr == nil {
			r.ID = id
		}
	}
	return r
}
