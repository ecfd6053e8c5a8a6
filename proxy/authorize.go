package proxy

import (
	"crypto/x509"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/strait-mesh/strait/federation"
	"github.com/strait-mesh/strait/trust"
)

// authorizeCaller is the inbound policy: callers in the proxy's own trust
// domain may connect; others only when the service's export in this cluster
// lists their SPIFFE ID or their trust domain among its consumers
// (trust.ConsumerPolicy, the same rules the ingress gateway applies). An
// export whose consumers list does not parse admits only the own trust
// domain: the policy fails closed.
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
	policy, err := trust.NewConsumerPolicy(own, exp.GetConsumers())
	if err != nil {
		p.log.Warn("export has invalid consumers; refusing other trust domains", logErr, err)
		return fmt.Errorf("%w: %s: %w", ErrUnauthorized, key, err)
	}
	if err := policy.Check(id); err != nil {
		return fmt.Errorf("%w: %s in cluster %s: %w", ErrUnauthorized, key, p.cfg.Cluster, err)
	}
	return nil
}

// trustDomain is the trust domain of the proxy's own SVID.
func (p *Proxy) trustDomain() (spiffeid.TrustDomain, error) {
	svid, err := p.cfg.SVIDs.GetX509SVID()
	if err != nil {
		return spiffeid.TrustDomain{}, wrapf("own SVID: %w", err)
	}
	return svid.ID.TrustDomain(), nil
}
