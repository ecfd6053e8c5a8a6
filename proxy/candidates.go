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

// key names a candidate among those of one connection.
func (c candidate) key() string { return c.path + " " + c.addr + " " + c.sni }

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
	allowed := exportServers(snap, up.Service, pinned)
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

// localCandidates orders this cluster's ready endpoints of the service
// that the service's servers policy admits (see serverOf).
func (p *Proxy) localCandidates(snap *federation.Snapshot, up Upstream, own spiffeid.TrustDomain) []candidate {
	policy := snap.ServerPolicy(p.cfg.Cluster, up.Service)
	policy.TrustDomain = own // this cluster's endpoints are in the proxy's own trust domain
	type admitted struct {
		ep *straitv1.Endpoint
		id spiffeid.ID
	}
	var eps []admitted
	for _, ep := range snap.ReadyEndpoints(p.cfg.Cluster, up.Service) {
		if ep.GetAddress() == "" {
			continue
		}
		id, err := serverOf(ep, policy)
		if err != nil {
			p.refuseServer(ep.GetAddress(), pathLocal, err)
			continue
		}
		eps = append(eps, admitted{ep, id})
	}
	if len(eps) == 0 {
		return nil
	}
	load := func(a admitted) int64 { return p.load.outstanding(a.ep.GetAddress()) }
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
		slices.SortStableFunc(rest, func(a, b admitted) int { return cmp.Compare(load(a), load(b)) })
	}
	sni := federation.ServiceName{Port: up.Port, Service: up.Service, Cluster: p.cfg.Cluster}.String()
	out := make([]candidate, 0, len(eps))
	for _, a := range eps {
		out = append(out, candidate{addr: a.ep.GetAddress(), sni: sni, path: pathLocal, allowed: exactServer(a.id)})
	}
	return out
}

// serverOf returns the SPIFFE ID a local endpoint names as its server, or
// an error when it names none or one the policy does not admit: such an
// endpoint is never dialed. The snapshot leaves these records out already
// when it knows the cluster's trust domain; the proxy checks again against
// its own.
func serverOf(ep *straitv1.Endpoint, policy federation.ServerPolicy) (spiffeid.ID, error) {
	id, err := spiffeid.FromString(ep.GetSpiffeId())
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("%w: endpoint %s names no valid SPIFFE ID: %w", ErrUnexpectedServer, ep.GetId(), err)
	}
	if err := policy.Check(id); err != nil {
		return spiffeid.ID{}, fmt.Errorf("%w: endpoint %s: %w", ErrUnexpectedServer, ep.GetId(), err)
	}
	return id, nil
}

// exactServer accepts exactly the SPIFFE ID of the endpoint that was dialed.
func exactServer(want spiffeid.ID) spiffeid.Matcher {
	return func(id spiffeid.ID) error {
		if id == want {
			return nil
		}
		return fmt.Errorf("%w: server %s is not the endpoint's %s", ErrUnexpectedServer, id, want)
	}
}

// exportServers accepts, through a gateway, the servers that an export of
// the service allows (Export.servers, in the exporting cluster's trust
// domain and the service's namespace), of any cluster that exports it
// (only the pinned one, if any), whether or not this proxy's snapshot has
// a live gateway of that cluster: the egress gateway routes by its own
// snapshot, which may be newer (a cluster's gateway just back), and the
// identity an export allows does not depend on which gateways are up. A
// cluster whose trust domain is not known admits nobody.
func exportServers(snap *federation.Snapshot, key federation.ServiceKey, pinned string) spiffeid.Matcher {
	var policies []federation.ServerPolicy
	for _, c := range snap.Exporters(key) {
		if pinned != "" && c != pinned {
			continue
		}
		if policy := snap.ServerPolicy(c, key); !policy.TrustDomain.IsZero() {
			policies = append(policies, policy)
		}
	}
	return matchAnyPolicy(policies)
}

// matchAnyPolicy matches an ID that one of the policies allows.
func matchAnyPolicy(policies []federation.ServerPolicy) spiffeid.Matcher {
	return func(id spiffeid.ID) error {
		for _, p := range policies {
			if p.Allows(id) {
				return nil
			}
		}
		allowed := make([]string, 0, len(policies))
		for _, p := range policies {
			allowed = append(allowed, p.String())
		}
		return fmt.Errorf("%w: server %s is not among the servers the exports allow %v", ErrUnexpectedServer, id, allowed)
	}
}
