package trust

import (
	"errors"
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Sentinel errors. Callers branch on them with errors.Is; the messages are
// for people.
var (
	// ErrStaleBundle reports a bundle whose sequence number is lower than the
	// one already known for its trust domain, or equal to it with different
	// content. The bundle already known is kept.
	ErrStaleBundle = errors.New("trust: stale bundle")
	// ErrNotCA reports a bundle authority that is not a CA certificate.
	ErrNotCA = errors.New("trust: bundle authority is not a CA certificate")
	// ErrInvalidBundle reports a bundle record that cannot be decoded or is
	// incomplete (no trust domain, no authority, undecodable DER).
	ErrInvalidBundle = errors.New("trust: invalid bundle")
	// ErrNotFederated reports a bundle of a trust domain outside the
	// allow-list of a BundleStore. Such bundles are ignored.
	ErrNotFederated = errors.New("trust: trust domain is not federated")
	// ErrNotReady reports an SVID source that has no SVID yet: its Run has not
	// obtained the first one.
	ErrNotReady = errors.New("trust: SVID source not ready")
	// ErrNoPreparedRoot reports ActivateRoot without a prior PrepareRoot.
	ErrNoPreparedRoot = errors.New("trust: no prepared root to activate")
	// ErrRootPending reports PrepareRoot while a prepared root is not yet
	// active.
	ErrRootPending = errors.New("trust: a prepared root is already pending")
	// ErrRootActive reports DropRoot of the root that signs new SVIDs.
	ErrRootActive = errors.New("trust: cannot drop the active root")
	// ErrUnknownRoot reports DropRoot of a certificate the CA does not hold.
	ErrUnknownRoot = errors.New("trust: unknown root")
	// ErrRootExpired reports an SVID request while the active root has
	// expired: rotate the root.
	ErrRootExpired = errors.New("trust: the active root has expired")
	// ErrRootInUse reports DropRoot while SVIDs signed by the root are still
	// valid. The concrete error is a *RootInUseError.
	ErrRootInUse = errors.New("trust: root still has unexpired SVIDs")
)

// RootInUseError is returned by DropRoot when an SVID signed by the root has
// not expired yet. It matches ErrRootInUse.
type RootInUseError struct {
	// Serial is the serial number of the root, in hex.
	Serial string
	// Until is the latest expiry of an SVID the root signed.
	Until time.Time
}

func (e *RootInUseError) Error() string {
	return fmt.Sprintf("trust: root %s signed SVIDs valid until %s; drop it after that",
		e.Serial, e.Until.UTC().Format(time.RFC3339))
}

// Is makes errors.Is(err, ErrRootInUse) true.
func (e *RootInUseError) Is(target error) bool { return target == ErrRootInUse }

// UnauthorizedError is returned by an authorizer that refuses a peer whose
// certificate verified: the peer is who it says, but may not connect.
type UnauthorizedError struct {
	// ID is the peer's SPIFFE ID.
	ID spiffeid.ID
	// Reason says which policy refused it.
	Reason string
}

func (e *UnauthorizedError) Error() string {
	if e.Reason == "" {
		return fmt.Sprintf("trust: %s is not authorized", e.ID)
	}
	return fmt.Sprintf("trust: %s is not authorized: %s", e.ID, e.Reason)
}

// UnknownTrustDomainError is returned by a bundle source that holds no bundle
// for a trust domain: nothing it signed can be verified.
type UnknownTrustDomainError struct {
	TrustDomain spiffeid.TrustDomain
}

func (e *UnknownTrustDomainError) Error() string {
	return fmt.Sprintf("trust: no bundle for trust domain %q", e.TrustDomain.Name())
}

// BadCertificateProblem names what is wrong with a peer certificate.
type BadCertificateProblem string

// The problems a BadCertificateError reports.
const (
	ProblemNoCertificate   BadCertificateProblem = "no certificate"
	ProblemNoSPIFFEID      BadCertificateProblem = "no SPIFFE ID URI SAN"
	ProblemManyURISANs     BadCertificateProblem = "more than one URI SAN"
	ProblemInvalidSPIFFEID BadCertificateProblem = "malformed SPIFFE ID"
	ProblemCAAsLeaf        BadCertificateProblem = "CA certificate used as a leaf"
	ProblemSigningKeyUsage BadCertificateProblem = "leaf with certificate or CRL signing key usage"
	ProblemExtKeyUsage     BadCertificateProblem = "extended key usage does not allow this role"
)

// BadCertificateError is returned when a peer presents a certificate that
// cannot be an X.509 SVID, before any chain is verified.
type BadCertificateError struct {
	Problem BadCertificateProblem
	// Err is the underlying error, if any.
	Err error
}

func (e *BadCertificateError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("trust: bad peer certificate: %s: %v", e.Problem, e.Err)
	}
	return fmt.Sprintf("trust: bad peer certificate: %s", e.Problem)
}

// Unwrap returns the underlying error.
func (e *BadCertificateError) Unwrap() error { return e.Err }

// PeerRefusedError is the error of a handshake whose peer this side
// refused: the configurations of this package return it from their
// verification, so that whoever owns the connection can count and log the
// refusal (reason, claimed identity) without reading message text. Its
// message is that of Err, which it unwraps to.
type PeerRefusedError struct {
	// ID is the SPIFFE ID the peer's certificate claims, verified or not
	// (it may be the reason for the refusal). Zero when the certificate
	// names none.
	ID spiffeid.ID
	// Reason says why, judged with the clock the peer was verified with.
	Reason HandshakeFailureReason
	// Err is what refused the peer.
	Err error
}

func (e *PeerRefusedError) Error() string { return e.Err.Error() }

// Unwrap returns the refusal's cause.
func (e *PeerRefusedError) Unwrap() error { return e.Err }
