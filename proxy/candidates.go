package proxy

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/strait-mesh/strait/federation"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// candidate is one place an outbound connection may go.
type candidate struct {
	addr string
	// sni names the destination in the inner ClientHello.
	sni string
	// path is pathLocal (an endpoint's inbound listener) or pathGateway
	// (this cluster's egress gateway).
	path string
	// allowed decides which server SPIFFE IDs are accepted.
	allowed spiffeid.Matcher
}

// candidates lists, in the order to try them, where a connection to up may
// go: ready local endpoints (power of two choices on outstanding
// connections first, then the rest by load) and then this cluster's egress
// gateways.
func (p *Proxy) candidates(snap *federation.Snapshot, up Upstream, own spiffeid.TrustDomain) []candidate {
	pinned := up.Cluster
	if pinned == federation.AnyCluster {
		pinned = ""
	}
	var local, out []candidate
	if pinned == "" || pinned == p.cfg.Cluster {
		local = p.localCandidates(snap, up, own)
	}
	// Local endpoints come first, unless fewer of them are ready than the
	// failover policy's min_healthy_percent: then traffic spills to the
	// gateway first and the local endpoints stay as the last resort.
	spill := snap.BelowHealthy(p.cfg.Cluster, up.Service, snap.FailoverPolicy(p.cfg.Cluster, up.Service).GetMinHealthyPercent())
	if !spill {
		out = local
	}
	remote := federation.ServiceName{Port: up.Port, Service: up.Service, Cluster: cmp.Or(pinned, federation.AnyCluster)}.String()
	allowed := exporterDomains(snap, up.Service, pinned, own)
	gws := snap.Gateways(p.cfg.Cluster)
	offset := 0
	if len(gws) > 0 {
		offset = rand.IntN(len(gws))
	}
	for i := range gws {
		gw := gws[(i+offset)%len(gws)]
		if gw.GetDraining() || gw.GetEgressAddress() == "" {
			continue
		}
		out = append(out, candidate{addr: gw.GetEgressAddress(), sni: remote, path: pathGateway, allowed: allowed})
	}
	if spill {
		out = append(out, local...)
	}
	return out
}

// localCandidates orders this cluster's ready endpoints of the service.
func (p *Proxy) localCandidates(snap *federation.Snapshot, up Upstream, own spiffeid.TrustDomain) []candidate {
	eps := slices.Clone(snap.ReadyEndpoints(p.cfg.Cluster, up.Service))
	eps = slices.DeleteFunc(eps, func(ep *straitv1.Endpoint) bool { return ep.GetAddress() == "" })
	if len(eps) == 0 {
		return nil
	}
	load := func(ep *straitv1.Endpoint) int64 { return p.load.outstanding(ep.GetAddress()) }
	if len(eps) > 1 {
		i, j := rand.IntN(len(eps)), rand.IntN(len(eps)-1)
		if j >= i {
			j++
		}
		if load(eps[j]) < load(eps[i]) {
			i = j
		}
		eps[0], eps[i] = eps[i], eps[0]
		rest := eps[1:]
		rand.Shuffle(len(rest), func(a, b int) { rest[a], rest[b] = rest[b], rest[a] })
		slices.SortStableFunc(rest, func(a, b *straitv1.Endpoint) int { return cmp.Compare(load(a), load(b)) })
	}
	sni := federation.ServiceName{Port: up.Port, Service: up.Service, Cluster: p.cfg.Cluster}.String()
	out := make([]candidate, 0, len(eps))
	for _, ep := range eps {
		out = append(out, candidate{addr: ep.GetAddress(), sni: sni, path: pathLocal, allowed: endpointIdentity(ep, own)})
	}
	return out
}

// endpointIdentity accepts exactly the SPIFFE ID an endpoint registered, or
// any member of this cluster's trust domain when it registered none.
func endpointIdentity(ep *straitv1.Endpoint, own spiffeid.TrustDomain) spiffeid.Matcher {
	if id, err := spiffeid.FromString(ep.GetSpiffeId()); err == nil && id.MemberOf(own) {
		return spiffeid.MatchID(id)
	}
	return spiffeid.MatchMemberOf(own)
}

// exporterDomains accepts servers in the trust domain of a cluster that
// exports the service (only the pinned one, if any) and in this cluster's.
func exporterDomains(snap *federation.Snapshot, key federation.ServiceKey, pinned string, own spiffeid.TrustDomain) spiffeid.Matcher {
	tds := []spiffeid.TrustDomain{own}
	svc, _ := snap.Service(key)
	for _, c := range svc.Clusters {
		if pinned != "" && c != pinned {
			continue
		}
		if td, err := spiffeid.TrustDomainFromString(snap.TrustDomain(c)); err == nil {
			tds = append(tds, td)
		}
	}
	return matchMemberOfAny(tds)
}

// matchMemberOfAny matches an ID in any of the trust domains.
func matchMemberOfAny(tds []spiffeid.TrustDomain) spiffeid.Matcher {
	return func(id spiffeid.ID) error {
		for _, td := range tds {
			if id.MemberOf(td) {
				return nil
			}
		}
		return fmt.Errorf("%w: server %s is not in a trust domain that exports the service", ErrUnexpectedServer, id)
	}
}
