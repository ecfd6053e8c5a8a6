package gateway

import (
	"cmp"
	"slices"

	"github.com/strait-mesh/strait/federation"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// candidate is one remote gateway that may serve a connection.
type candidate struct {
	cluster string
	rec     *straitv1.Gateway
	peer    *peer
}

// candidates lists, best first, the remote gateways that may serve name:
// clusters that export the service with the port and are alive (other than
// the gateway's own), same region first, then by export age; within a
// cluster its gateways active/active, least busy first. When the list is
// empty, code says why.
func (g *Gateway) candidates(snap *federation.Snapshot, name federation.ServiceName) ([]candidate, straitv1.StreamCode) {
	clusters, exported := g.exportingClusters(snap, name)
	if !exported {
		return nil, straitv1.StreamCode_STREAM_CODE_NOT_EXPORTED
	}
	// Stable: export age order is kept within each locality.
	slices.SortStableFunc(clusters, func(a, b string) int {
		return cmp.Compare(g.regionRank(snap, a), g.regionRank(snap, b))
	})
	var out []candidate
	for _, c := range clusters {
		out = append(out, g.clusterCandidates(snap, c)...)
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

// regionRank is 0 for a cluster in the gateway's region, 1 otherwise.
func (g *Gateway) regionRank(snap *federation.Snapshot, cluster string) int {
	for _, gw := range snap.Gateways(cluster) {
		if g.cfg.Region != "" && gw.GetRegion() == g.cfg.Region {
			return 0
		}
	}
	return 1
}

// clusterCandidates orders a cluster's gateways that are not draining:
// those that did not reply DRAINING and are not in backoff first, then
// fewest open streams, ties broken round-robin so that streams spread over
// all of them.
func (g *Gateway) clusterCandidates(snap *federation.Snapshot, cluster string) []candidate {
	var out []candidate
	for _, gw := range snap.Gateways(cluster) {
		if gw.GetDraining() {
			continue
		}
		out = append(out, candidate{cluster: cluster, rec: gw, peer: g.pool.peerFor(gw)})
	}
	if len(out) < 2 {
		return out
	}
	start := int(g.pool.rr.Add(1) % uint64(len(out)))
	out = append(out[start:], out[:start]...)
	now := g.cfg.Now()
	type key struct {
		penalty int // 2 drained, 1 in backoff
		streams int64
	}
	keys := make(map[*peer]key, len(out))
	for _, c := range out {
		k := key{streams: c.peer.load()}
		if c.peer.isDrained() {
			k.penalty = 2
		} else if c.peer.inBackoff(now) {
			k.penalty = 1
		}
		keys[c.peer] = k
	}
	slices.SortStableFunc(out, func(a, b candidate) int {
		ka, kb := keys[a.peer], keys[b.peer]
		return cmp.Or(cmp.Compare(ka.penalty, kb.penalty), cmp.Compare(ka.streams, kb.streams))
	})
	return out
}
