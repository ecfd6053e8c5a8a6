package gateway

import (
	"cmp"
	"slices"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// orderEndpoints keeps the endpoints that serve port (an endpoint without a
// port list serves every port of its service) and orders them same zone
// first, rotating the start so that streams spread over them.
func (g *Gateway) orderEndpoints(eps []*straitv1.Endpoint, port uint32) []*straitv1.Endpoint {
	out := make([]*straitv1.Endpoint, 0, len(eps))
	for _, ep := range eps {
		if endpointServes(ep, port) {
			out = append(out, ep)
		}
	}
	if len(out) < 2 {
		return out
	}
	start := int(g.pool.rr.Add(1) % uint64(len(out)))
	out = append(out[start:], out[:start]...)
	slices.SortStableFunc(out, func(a, b *straitv1.Endpoint) int {
		return cmp.Compare(g.zoneRank(a), g.zoneRank(b))
	})
	return out
}

func endpointServes(ep *straitv1.Endpoint, port uint32) bool {
	if len(ep.GetPorts()) == 0 {
		return true
	}
	for _, p := range ep.GetPorts() {
		if p.GetPort() == port {
			return true
		}
	}
	return false
}

func (g *Gateway) zoneRank(ep *straitv1.Endpoint) int {
	if g.cfg.Zone != "" && ep.GetZone() == g.cfg.Zone {
		return 0
	}
	return 1
}

// consumerAllowed reports whether a caller of trust domain td may consume
// exp: the exporting cluster's own trust domain always may; others must be
// listed in the export's consumers, as spiffe://td or as any SPIFFE ID of
// td. Unparsable entries allow nobody.
func consumerAllowed(exp *straitv1.Export, own, td spiffeid.TrustDomain) bool {
	if td == own {
		return true
	}
	for _, c := range exp.GetConsumers() {
		if ctd, err := spiffeid.TrustDomainFromString(c); err == nil && ctd == td {
			return true
		}
		if id, err := spiffeid.FromString(c); err == nil && id.TrustDomain() == td {
			return true
		}
	}
	return false
}
