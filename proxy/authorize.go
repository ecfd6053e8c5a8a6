package proxy

import (
	"crypto/x509"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/strait-mesh/strait/federation"
)

// authorizeCaller is the inbound policy: callers in the proxy's own trust
// domain may connect; others only when the service's export in this cluster
// lists their SPIFFE ID or their trust domain among its consumers.
func (p *Proxy) authorizeCaller(id spiffeid.ID, _ [][]*x509.Certificate) error {
	own, err := p.trustDomain()
	if err != nil {
		return err
	}
	if id.MemberOf(own) {
		return nil
	}
	key := federation.ServiceKey{Namespace: p.cfg.Namespace, Name: p.cfg.Service}
	exp := p.cfg.Snapshots.Snapshot().Export(p.cfg.Cluster, key)
	if consumerAllowed(id, exp.GetConsumers()) {
		return nil
	}
	return fmt.Errorf("%w: %s may not consume %s in cluster %s", ErrUnauthorized, id, key, p.cfg.Cluster)
}

// consumerAllowed reports whether id matches one of the consumers: a SPIFFE
// ID (equal) or a bare trust domain (member of). Malformed entries match
// nothing.
func consumerAllowed(id spiffeid.ID, consumers []string) bool {
	for _, c := range consumers {
		cid, err := spiffeid.FromString(c)
		if err != nil {
			continue
		}
		if cid.Path() == "" && id.MemberOf(cid.TrustDomain()) {
			return true
		}
		if cid == id {
			return true
		}
	}
	return false
}

// trustDomain is the trust domain of the proxy's own SVID.
func (p *Proxy) trustDomain() (spiffeid.TrustDomain, error) {
	svid, err := p.cfg.SVIDs.GetX509SVID()
	if err != nil {
		return spiffeid.TrustDomain{}, wrapf("own SVID: %w", err)
	}
	return svid.ID.TrustDomain(), nil
}
