package trust

import (
	"crypto/x509"
	"encoding/asn1"
	"errors"
)

// HandshakeFailureReason is the closed set of reasons a handshake is refused
// for, the label of strait_trust_handshake_failures_total.
type HandshakeFailureReason string

// The reasons, from ClassifyHandshakeError.
const (
	// ReasonExpired: the peer's certificate or a CA in its chain is outside
	// its validity period.
	ReasonExpired HandshakeFailureReason = "expired"
	// ReasonUntrustedDomain: there is no bundle for the peer's trust domain,
	// or its chain does not lead to an authority of that bundle.
	ReasonUntrustedDomain HandshakeFailureReason = "untrusted_domain"
	// ReasonBadCertificate: the peer's certificate cannot be an X.509 SVID
	// (no or several URI SANs, a CA as leaf, unparsable, bad constraints).
	ReasonBadCertificate HandshakeFailureReason = "bad_certificate"
	// ReasonUnauthorized: the peer is authenticated but a policy refuses it.
	ReasonUnauthorized HandshakeFailureReason = "unauthorized"
	// ReasonOther: anything else (network errors, no local SVID, ...).
	ReasonOther HandshakeFailureReason = "other"
)

// HandshakeFailureReasons lists every reason.
func HandshakeFailureReasons() []HandshakeFailureReason {
	return []HandshakeFailureReason{ReasonExpired, ReasonUntrustedDomain, ReasonBadCertificate, ReasonUnauthorized, ReasonOther}
}

// ClassifyHandshakeError tells why a handshake was refused, from the types
// of the errors err wraps (this package's, crypto/x509's), never from
// message text. A nil error is ReasonOther.
func ClassifyHandshakeError(err error) HandshakeFailureReason {
	var (
		unauthorized *UnauthorizedError
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
	case errors.As(err, &unauthorized):
		return ReasonUnauthorized
	case errors.As(err, &badCert):
		return ReasonBadCertificate
	case errors.As(err, &unknownTD):
		return ReasonUntrustedDomain
	case errors.As(err, &invalid):
		if invalid.Reason == x509.Expired {
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
