package trust

import (
	"crypto/x509"
	"errors"
	"fmt"
	"strings"

	"github.com/hashicorp/go-multierror"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
)

// ConsumerPolicy says who may consume an export: the exporting cluster's own
// trust domain always, plus the SPIFFE IDs and whole trust domains the
// export's consumers list names. The destination proxy checks callers per
// SPIFFE ID (Allows, Authorizer); the ingress gateway checks calling
// gateways per trust domain (AllowsTrustDomain). The zero value allows
// nobody; it is immutable once made.
type ConsumerPolicy struct {
	owner   spiffeid.TrustDomain
	domains map[spiffeid.TrustDomain]bool
	ids     map[spiffeid.ID]bool
	// idDomains are the trust domains of the listed SPIFFE IDs.
	idDomains map[spiffeid.TrustDomain]bool
}

// NewConsumerPolicy parses an export's consumers: each entry is a SPIFFE ID
// (spiffe://td/path) or a whole trust domain (spiffe://td). owner is the
// exporting cluster's trust domain. Every malformed entry is reported in one
// error.
func NewConsumerPolicy(owner spiffeid.TrustDomain, consumers []string) (*ConsumerPolicy, error) {
	var errs *multierror.Error
	if owner.IsZero() {
		errs = multierror.Append(errs, errors.New("owner trust domain is required"))
	}
	p := &ConsumerPolicy{
		owner:     owner,
		domains:   map[spiffeid.TrustDomain]bool{},
		ids:       map[spiffeid.ID]bool{},
		idDomains: map[spiffeid.TrustDomain]bool{},
	}
	for i, c := range consumers {
		id, err := spiffeid.FromString(strings.TrimSuffix(c, "/"))
		if err != nil {
			errs = multierror.Append(errs, fmt.Errorf("consumers[%d] %q: %w", i, c, err))
			continue
		}
		if id.Path() == "" {
			p.domains[id.TrustDomain()] = true
			continue
		}
		p.ids[id] = true
		p.idDomains[id.TrustDomain()] = true
	}
	if err := errs.ErrorOrNil(); err != nil {
		return nil, fmt.Errorf("trust: consumer policy: %w", err)
	}
	return p, nil
}

// Allows reports whether a caller with this SPIFFE ID may consume.
func (p *ConsumerPolicy) Allows(id spiffeid.ID) bool {
	if p == nil || id.IsZero() {
		return false
	}
	td := id.TrustDomain()
	return td == p.owner || p.domains[td] || p.ids[id]
}

// AllowsTrustDomain reports whether some caller of trust domain td may
// consume: the check of an ingress gateway, which sees the calling gateway's
// trust domain and leaves the per-ID check to the destination proxy.
func (p *ConsumerPolicy) AllowsTrustDomain(td spiffeid.TrustDomain) bool {
	if p == nil || td.IsZero() {
		return false
	}
	return td == p.owner || p.domains[td] || p.idDomains[td]
}

// Check returns nil when id may consume, and *UnauthorizedError otherwise.
func (p *ConsumerPolicy) Check(id spiffeid.ID) error {
	if p.Allows(id) {
		return nil
	}
	return &UnauthorizedError{ID: id, Reason: "not a consumer of the export"}
}

// CheckTrustDomain returns nil when the trust domain of id may consume, and
// *UnauthorizedError otherwise.
func (p *ConsumerPolicy) CheckTrustDomain(id spiffeid.ID) error {
	if p.AllowsTrustDomain(id.TrustDomain()) {
		return nil
	}
	return &UnauthorizedError{ID: id, Reason: "trust domain " + id.TrustDomain().Name() + " may not consume the export"}
}

// Authorizer returns a tlsconfig.Authorizer that applies Check.
func (p *ConsumerPolicy) Authorizer() tlsconfig.Authorizer {
	return func(id spiffeid.ID, _ [][]*x509.Certificate) error { return p.Check(id) }
}

// AuthorizeTrustDomains returns a tlsconfig.Authorizer that accepts any peer
// of the given trust domains and refuses others with *UnauthorizedError: the
// check between gateways.
func AuthorizeTrustDomains(tds ...spiffeid.TrustDomain) tlsconfig.Authorizer {
	allowed := map[spiffeid.TrustDomain]bool{}
	for _, td := range tds {
		allowed[td] = true
	}
	return func(id spiffeid.ID, _ [][]*x509.Certificate) error {
		if allowed[id.TrustDomain()] {
			return nil
		}
		return &UnauthorizedError{ID: id, Reason: "trust domain " + id.TrustDomain().Name() + " is not allowed"}
	}
}

// AuthorizeID returns a tlsconfig.Authorizer that accepts only id and refuses
// others with *UnauthorizedError: what a client expects of a server.
func AuthorizeID(id spiffeid.ID) tlsconfig.Authorizer {
	return func(peer spiffeid.ID, _ [][]*x509.Certificate) error {
		if peer == id {
			return nil
		}
		return &UnauthorizedError{ID: peer, Reason: "expected " + id.String()}
	}
}

// AuthorizeFunc adapts a predicate to a tlsconfig.Authorizer that refuses
// with *UnauthorizedError.
func AuthorizeFunc(allow func(spiffeid.ID) bool, reason string) tlsconfig.Authorizer {
	return func(id spiffeid.ID, _ [][]*x509.Certificate) error {
		if allow(id) {
			return nil
		}
		return &UnauthorizedError{ID: id, Reason: reason}
	}
}

// AuthorizeServer returns a tlsconfig.Authorizer for the client side of a
// connection that must reach a given destination: it accepts the server
// only when allow returns nil for its SPIFFE ID, and otherwise refuses it
// with *UnexpectedServerError (wrapping allow's error). The caller's proxy
// passes the identity of the endpoint it dialed, or the identities an
// export allows to serve it: a trust domain alone is never enough.
func AuthorizeServer(allow spiffeid.Matcher) tlsconfig.Authorizer {
	return func(id spiffeid.ID, _ [][]*x509.Certificate) error {
		if err := allow(id); err != nil {
			return &UnexpectedServerError{ID: id, Err: err}
		}
		return nil
	}
}

// UnexpectedServerError is a server whose certificate verified but whose
// SPIFFE ID may not serve what the client dialed: an impostor, or a stale
// record. Handshake failures counted by reason name it
// ReasonUnexpectedServer.
type UnexpectedServerError struct {
	// ID is the server's SPIFFE ID.
	ID spiffeid.ID
	// Err says what was expected instead.
	Err error
}

func (e *UnexpectedServerError) Error() string {
	return fmt.Sprintf("trust: unexpected server %s: %v", e.ID, e.Err)
}

// Unwrap returns what was expected instead.
func (e *UnexpectedServerError) Unwrap() error { return e.Err }
