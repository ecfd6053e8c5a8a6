package gateway

import (
	"cmp"
	"slices"
	"time"

	"github.com/strait-mesh/strait/federation"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// candidate is one remote gateway that may serve a connection.
type candidate struct {
	cluster string
	rec     *straitv1.Gateway
	peer    *peer
	rank    rank
}

// rank orders candidates: lower is better.
type rank struct {
	penalty int // 2: replied DRAINING; 1: in backoff or still dialing
	streams int64
}

func (r rank) compare(o rank) int {
	return cmp.Or(cmp.Compare(r.penalty, o.penalty), cmp.Compare(r.streams, o.streams))
}

// candidates lists, best first, the remote gateways that may serve name:
// clusters that export the service with the port and are alive (other than
// the gateway's own). Clusters with a proven gateway come before those
// whose gateways are all failing, dialing or draining; then same region
// first (unless fewer of a cluster's endpoints are ready than the policy's
// min_healthy_percent: it spills to the next), then the failover policy's
// region order; then oldest export first. Within a cluster its gateways serve
// active/active, least busy first. When the list is empty, code says why.
func (g *Gateway) candidates(snap *federation.Snapshot, name federation.ServiceName) ([]candidate, straitv1.StreamCode) {
	clusters, exported := g.exportingClusters(snap, name)
	if !exported {
		return nil, straitv1.StreamCode_STREAM_CODE_NOT_EXPORTED
	}
	type group struct {
		cands  []candidate
		spill  bool // fewer endpoints healthy than the policy's minimum
		region int
	}
	groups := make([]group, 0, len(clusters))
	policy := snap.FailoverPolicy(g.cfg.Cluster, name.Service)
	order := policy.GetRegionOrder()
	for _, c := range clusters {
		if cands := g.clusterCandidates(snap, c); len(cands) > 0 {
			spill := snap.BelowHealthy(c, name.Service, policy.GetMinHealthyPercent())
			groups = append(groups, group{cands, spill, g.regionRank(snap, c, order)})
		}
	}
	// Stable: export age order is kept among equals.
	slices.SortStableFunc(groups, func(a, b group) int {
		return cmp.Or(cmp.Compare(a.cands[0].rank.penalty, b.cands[0].rank.penalty), compareBool(a.spill, b.spill), cmp.Compare(a.region, b.region))
	})
	var out []candidate
	for _, gr := range groups {
		out = append(out, gr.cands...)
	}
	if len(out) == 0 {
		return nil, straitv1.StreamCode_STREAM_CODE_NO_ENDPOINT
	}
	return out, straitv1.StreamCode_STREAM_CODE_ACCEPTED
}

// exportingClusters returns the live remote clusters, oldest export first,
// that export name's service with its port, and whether any cluster (live or
// not, remote or not) does.
func (g *Gateway) exportingClusters(snap *federation.Snapshot, name federation.ServiceName) ([]string, bool) {
	pinned := name.Cluster != federation.AnyCluster
	exported := false
	for _, e := range snap.Exports(name.Service) {
		if exportHasPort(e, name.Port) && (!pinned || e.GetCluster() == name.Cluster) {
			exported = true
		}
	}
	svc, ok := snap.Service(name.Service)
	if !ok || !exported {
		return nil, exported
	}
	var out []string
	for _, c := range svc.Clusters {
		if c == g.cfg.Cluster || (pinned && c != name.Cluster) {
			continue
		}
		if exportHasPort(snap.Export(c, name.Service), name.Port) {
			out = append(out, c)
		}
	}
	return out, true
}

func exportHasPort(e *straitv1.Export, port uint16) bool {
	for _, p := range e.GetPorts() {
		if p.GetPort() == uint32(port) && p.GetProtocol() != straitv1.Protocol_PROTOCOL_UDP {
			return true
		}
	}
	return false
}

// regionOrder is the failover region order for a service (see
// federation.Snapshot.FailoverPolicy).
func (g *Gateway) regionOrder(snap *federation.Snapshot, key federation.ServiceKey) []string {
	return snap.FailoverPolicy(g.cfg.Cluster, key).GetRegionOrder()
}

// compareBool orders false before true.
func compareBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// regionRank orders clusters by locality: 0 for one in the gateway's own
// region, 1+i for one in the i-th region of order, and after those the
// clusters of regions order does not name.
func (g *Gateway) regionRank(snap *federation.Snapshot, cluster string, order []string) int {
	region := ""
	for _, gw := range snap.Gateways(cluster) {
		if g.cfg.Region != "" && gw.GetRegion() == g.cfg.Region {
			return 0
		}
		if region == "" {
			region = gw.GetRegion()
		}
	}
	if i := slices.Index(order, region); i >= 0 && region != "" {
		return 1 + i
	}
	return 1 + len(order)
}

// clusterCandidates orders a cluster's gateways that are not draining by
// rank, ties broken round-robin so that streams spread over all of them.
func (g *Gateway) clusterCandidates(snap *federation.Snapshot, cluster string) []candidate {
	now := g.cfg.Now()
	var out []candidate
	for _, gw := range snap.Gateways(cluster) {
		if gw.GetDraining() {
			continue
		}
		pr := g.pool.peerFor(gw, snap.Revision())
		out = append(out, candidate{cluster: cluster, rec: gw, peer: pr, rank: pr.rank(now)})
	}
	if len(out) < 2 {
		return out
	}
	start := int(g.pool.rr.Add(1) % uint64(len(out)))
	out = append(out[start:], out[:start]...)
	slices.SortStableFunc(out, func(a, b candidate) int { return a.rank.compare(b.rank) })
	return out
}

// rank scores the peer for the next stream. A peer without a connection
// is put after the others while it is in backoff, or while it is being
// redialed after its connection was lost; not during its first dial: the
// streams that come while a cluster the failover policy now prefers is
// dialed for the first time wait for that dial instead of going to the
// cluster it replaces (a pooled session opened then would keep going
// there for its whole life).
func (pr *peer) rank(now time.Time) rank {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	var r rank
	up, streams := pr.loadLocked()
	r.streams = streams
	switch {
	case pr.drained:
		r.penalty = 2
	case !up && ((pr.dialingLocked() && (pr.connected || pr.failures > 0)) || (pr.failures > 0 && now.Before(pr.retryAt))):
		r.penalty = 1
	}
	return r
}
