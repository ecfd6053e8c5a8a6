package federation

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/proto"

	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// clusterService names one cluster's part of a service: its endpoints.
type clusterService struct {
	cluster string
	key     ServiceKey
}

// snapshotBuilder derives snapshots incrementally: it holds the records
// by id, grouped as the snapshot needs them, and notes which groups a
// change touched; build rebuilds only those and shares everything else
// with the previous snapshot. One change costs its group (a cluster's
// endpoints of one service, a service's exports, a cluster's gateways),
// not the whole federation. It is not safe for concurrent use.
type snapshotBuilder struct {
	// ks parses ids, which are etcd keys when keyed: set finds the record
	// an id holds (to replace or remove it) in the index its key names,
	// so the builder keeps no map of every record beside its indexes
	// (400,000 entries, 17 MB at 100,000 exports). NewSnapshot's builder
	// is not keyed: it only adds records, under ids that are unique.
	ks    Keyspace
	keyed bool

	gateways map[string]map[string]*straitv1.Gateway    // cluster → id →
	exports  map[ServiceKey]map[string]*straitv1.Export // service → id →
	// endpoints are the endpoint records by cluster, then service (a
	// keyed builder's ids are their keys): a cluster's keys are the
	// services it has endpoint records of.
	endpoints map[string]map[ServiceKey][]*rec
	bundles   map[string]map[string]*straitv1.TrustBundle   // trust domain → id →
	configs   map[string]map[string]*straitv1.GatewayConfig // cluster ("" for the global one) → id →
	exportsOf map[string]int                                // cluster → its number of exports
	gatewayTD map[string]string                             // cluster → trust domain its gateways announce
	// announced is the trust domain endpoints are judged by: the one the
	// cluster's gateways announce, else the one the previous snapshot
	// knew (recall) while the cluster has an export or an endpoint record.
	announced map[string]string
	recall    pmap[string, string]
	conflicts map[ServiceKey]int // service → exports in conflict
	rejected  map[*rec]RejectedEndpoint
	nConflict int

	dirtyGateways map[string]struct{}
	dirtyExports  map[ServiceKey]struct{}
	dirtyGroups   map[clusterService]struct{}
	dirtyBundles  map[string]struct{}
	dirtyConfigs  map[string]struct{}
	dirtyDomains  map[string]struct{}
	dirtyAnnounce map[string]struct{} // clusters whose announced trust domain may change
	dirtyRejected bool
	dirtySets     bool // the lists of clusters or services may have changed

	prev *Snapshot
}

// newSnapshotBuilder returns a builder whose ids are the keys of ks.
func newSnapshotBuilder(ks Keyspace) *snapshotBuilder {
	b := newBuilder()
	b.ks, b.keyed = ks, true
	return b
}

func newBuilder() *snapshotBuilder {
	return &snapshotBuilder{
		gateways:      map[string]map[string]*straitv1.Gateway{},
		exports:       map[ServiceKey]map[string]*straitv1.Export{},
		endpoints:     map[string]map[ServiceKey][]*rec{},
		bundles:       map[string]map[string]*straitv1.TrustBundle{},
		configs:       map[string]map[string]*straitv1.GatewayConfig{},
		exportsOf:     map[string]int{},
		gatewayTD:     map[string]string{},
		announced:     map[string]string{},
		conflicts:     map[ServiceKey]int{},
		rejected:      map[*rec]RejectedEndpoint{},
		dirtyGateways: map[string]struct{}{},
		dirtyExports:  map[ServiceKey]struct{}{},
		dirtyGroups:   map[clusterService]struct{}{},
		dirtyBundles:  map[string]struct{}{},
		dirtyConfigs:  map[string]struct{}{},
		dirtyDomains:  map[string]struct{}{},
		dirtyAnnounce: map[string]struct{}{},
		prev:          emptySnapshot(),
	}
}

// buildSnapshot builds a snapshot from scratch (NewSnapshot), remembering
// the trust domains prev knew (Next) unless prev is nil.
func buildSnapshot(revision int64, records []Record, prev *Snapshot) *Snapshot {
	b := newBuilder()
	if prev != nil {
		b.recall = prev.trustDomains
	}
	for i := range records {
		// Records need not have keys (nor unique ones) here: the index
		// tells them apart.
		b.set(strconv.Itoa(i)+"\x00"+records[i].Key, recOf(&records[i]))
	}
	return b.build(revision)
}

// set replaces the record of id (nil removes it). r must not change.
// Only a keyed builder replaces or removes: an id's record is found in the
// index its key names (validation made a record's message agree with its
// key).
func (b *snapshotBuilder) set(id string, r *rec) {
	if b.keyed {
		if old := b.find(id); old != nil {
			if r != nil && sameRecord(old, r) {
				return
			}
			b.remove(id, old)
		}
	}
	if r != nil {
		b.add(id, r)
	}
}

// find returns the record the builder holds under id, or nil.
func (b *snapshotBuilder) find(id string) *rec {
	info, err := b.ks.Parse(id)
	if err != nil {
		return nil
	}
	var msg proto.Message
	switch info.Kind {
	case KindGateway:
		if m, ok := b.gateways[info.Cluster][id]; ok {
			msg = m
		}
	case KindExport:
		if m, ok := b.exports[ServiceKey{Namespace: info.Namespace, Name: info.Service}][id]; ok {
			msg = m
		}
	case KindEndpoint:
		for _, r := range b.endpoints[info.Cluster][ServiceKey{Namespace: info.Namespace, Name: info.Service}] {
			if r.key == id {
				return r
			}
		}
	case KindBundle:
		if m, ok := b.bundles[info.TrustDomain][id]; ok {
			msg = m
		}
	case KindConfig:
		if m, ok := b.configs[info.Cluster][id]; ok {
			msg = &clusterConfig{GatewayConfig: m, cluster: info.Cluster}
		}
	}
	if msg == nil {
		return nil
	}
	return &rec{key: id, msg: msg}
}

// sameRecord reports whether two recs hold the same record: the same
// message (a cache decodes every new value into a new message).
func sameRecord(a, b *rec) bool {
	if a == b {
		return true
	}
	if _, ok := a.msg.(*straitv1.Endpoint); ok {
		return false // the builder holds endpoints' recs themselves
	}
	return a.message() == b.message()
}

// add indexes a record; a record of an unknown kind is ignored.
func (b *snapshotBuilder) add(id string, r *rec) {
	switch m := r.msg.(type) {
	case *straitv1.Gateway:
		c := m.GetCluster()
		if b.gateways[c] == nil {
			b.gateways[c] = map[string]*straitv1.Gateway{}
			b.dirtySets = true
		}
		b.gateways[c][id] = m
		b.dirtyGateways[c] = struct{}{}
	case *straitv1.Export:
		k := ServiceKey{Namespace: m.GetNamespace(), Name: m.GetService()}
		if b.exports[k] == nil {
			b.exports[k] = map[string]*straitv1.Export{}
			b.dirtySets = true
		}
		b.exports[k][id] = m
		b.dirtyExports[k] = struct{}{}
		if b.exportsOf[m.GetCluster()]++; b.exportsOf[m.GetCluster()] == 1 {
			b.dirtySets = true
			b.dirtyAnnounce[m.GetCluster()] = struct{}{}
		}
		// The export says who may serve the cluster's endpoints.
		b.dirtyGroups[clusterService{m.GetCluster(), k}] = struct{}{}
	case *straitv1.Endpoint:
		g := clusterService{m.GetCluster(), ServiceKey{Namespace: m.GetNamespace(), Name: m.GetService()}}
		svcs := b.endpoints[g.cluster]
		if svcs == nil {
			svcs = map[ServiceKey][]*rec{}
			b.endpoints[g.cluster] = svcs
			b.dirtyAnnounce[g.cluster] = struct{}{}
		}
		svcs[g.key] = append(svcs[g.key], r)
		b.dirtyGroups[g] = struct{}{}
	case *straitv1.TrustBundle:
		td := m.GetTrustDomain()
		if b.bundles[td] == nil {
			b.bundles[td] = map[string]*straitv1.TrustBundle{}
		}
		b.bundles[td][id] = m
		b.dirtyBundles[td] = struct{}{}
	case *clusterConfig:
		c := m.cluster
		if b.configs[c] == nil {
			b.configs[c] = map[string]*straitv1.GatewayConfig{}
		}
		b.configs[c][id] = m.GatewayConfig
		b.dirtyConfigs[c] = struct{}{}
	}
}

// remove undoes add.
func (b *snapshotBuilder) remove(id string, r *rec) {
	switch m := r.msg.(type) {
	case *straitv1.Gateway:
		c := m.GetCluster()
		delete(b.gateways[c], id)
		if len(b.gateways[c]) == 0 {
			delete(b.gateways, c)
			b.dirtySets = true
		}
		b.dirtyGateways[c] = struct{}{}
	case *straitv1.Export:
		k := ServiceKey{Namespace: m.GetNamespace(), Name: m.GetService()}
		delete(b.exports[k], id)
		if len(b.exports[k]) == 0 {
			delete(b.exports, k)
			b.dirtySets = true
		}
		b.dirtyExports[k] = struct{}{}
		if b.exportsOf[m.GetCluster()]--; b.exportsOf[m.GetCluster()] <= 0 {
			delete(b.exportsOf, m.GetCluster())
			b.dirtySets = true
			b.dirtyAnnounce[m.GetCluster()] = struct{}{}
		}
		b.dirtyGroups[clusterService{m.GetCluster(), k}] = struct{}{}
	case *straitv1.Endpoint:
		g := clusterService{m.GetCluster(), ServiceKey{Namespace: m.GetNamespace(), Name: m.GetService()}}
		svcs := b.endpoints[g.cluster]
		recs := slices.DeleteFunc(svcs[g.key], func(x *rec) bool { return x == r })
		if len(recs) == 0 {
			delete(svcs, g.key)
			if len(svcs) == 0 {
				delete(b.endpoints, g.cluster)
				b.dirtyAnnounce[g.cluster] = struct{}{}
			}
		} else {
			svcs[g.key] = recs
		}
		if _, ok := b.rejected[r]; ok {
			delete(b.rejected, r)
			b.dirtyRejected = true
		}
		b.dirtyGroups[g] = struct{}{}
	case *straitv1.TrustBundle:
		td := m.GetTrustDomain()
		delete(b.bundles[td], id)
		if len(b.bundles[td]) == 0 {
			delete(b.bundles, td)
		}
		b.dirtyBundles[td] = struct{}{}
	case *clusterConfig:
		c := m.cluster
		delete(b.configs[c], id)
		if len(b.configs[c]) == 0 {
			delete(b.configs, c)
		}
		b.dirtyConfigs[c] = struct{}{}
	}
}

// build derives the next snapshot from the previous one and the changes
// since, and clears the changes.
func (b *snapshotBuilder) build(revision int64) *Snapshot {
	prev := b.prev
	s := &Snapshot{
		revision:      revision,
		gateways:      prev.gateways,
		exports:       prev.exports,
		endpoints:     prev.endpoints,
		bundles:       prev.bundles,
		globalConfig:  prev.globalConfig,
		clusterConfig: prev.clusterConfig,
		trustDomains:  prev.trustDomains,
		rejected:      prev.rejected,
		clusters:      prev.clusters,
		services:      prev.services,
	}
	b.buildGateways(s)
	b.buildAnnounced()
	b.buildExports(s)
	b.buildEndpoints(s)
	b.buildTrustDomains(s)
	b.buildBundles(s)
	b.buildConfigs(s)
	if b.dirtyRejected {
		s.rejected = make([]RejectedEndpoint, 0, len(b.rejected))
		for _, r := range b.rejected {
			s.rejected = append(s.rejected, r)
		}
		slices.SortFunc(s.rejected, func(a, b RejectedEndpoint) int { return cmp.Compare(a.Record.Key, b.Record.Key) })
		if len(s.rejected) == 0 {
			s.rejected = nil
		}
		b.dirtyRejected = false
	}
	if b.dirtySets {
		s.clusters = b.clusterList()
		s.services = s.exports.keys(compareServiceKey)
		b.dirtySets = false
	}
	s.conflicts = b.nConflict
	b.prev = s
	b.recall = s.trustDomains
	return s
}

// buildGateways rebuilds the gateways of the clusters that changed.
func (b *snapshotBuilder) buildGateways(s *Snapshot) {
	if len(b.dirtyGateways) == 0 {
		return
	}
	t := s.gateways.txn()
	for c := range b.dirtyGateways {
		gws := make([]*straitv1.Gateway, 0, len(b.gateways[c]))
		for _, g := range b.gateways[c] {
			gws = append(gws, g)
		}
		slices.SortFunc(gws, func(a, b *straitv1.Gateway) int { return cmp.Compare(a.GetId(), b.GetId()) })
		delete(b.gatewayTD, c)
		for _, g := range gws {
			if td := g.GetTrustDomain(); td != "" {
				b.gatewayTD[c] = td
				break
			}
		}
		if len(gws) == 0 {
			t.del(c)
		} else {
			t.set(c, gws)
		}
		b.dirtyAnnounce[c] = struct{}{}
	}
	s.gateways = t.done()
	empty(&b.dirtyGateways)
}

// buildAnnounced works out again the trust domain endpoints are judged by
// for the clusters that may have changed; a cluster whose trust domain
// changed has its endpoints judged again.
func (b *snapshotBuilder) buildAnnounced() {
	for c := range b.dirtyAnnounce {
		announced := b.gatewayTD[c]
		if announced == "" && (b.exportsOf[c] > 0 || len(b.endpoints[c]) > 0) {
			announced = b.recall.at(c)
		}
		if announced == b.announced[c] {
			continue
		}
		if announced == "" {
			delete(b.announced, c)
		} else {
			b.announced[c] = announced
		}
		for k := range b.endpoints[c] {
			b.dirtyGroups[clusterService{c, k}] = struct{}{}
		}
		b.dirtyDomains[c] = struct{}{}
	}
	empty(&b.dirtyAnnounce)
}

// buildExports rebuilds the export lists (oldest first) of the services
// that changed, and their conflicts.
func (b *snapshotBuilder) buildExports(s *Snapshot) {
	if len(b.dirtyExports) == 0 {
		return
	}
	t := s.exports.txn()
	for k := range b.dirtyExports {
		b.nConflict -= b.conflicts[k]
		delete(b.conflicts, k)
		if len(b.exports[k]) == 0 {
			t.del(k)
			continue
		}
		exps := make([]*straitv1.Export, 0, len(b.exports[k]))
		for _, e := range b.exports[k] {
			exps = append(exps, e)
		}
		slices.SortFunc(exps, compareExportAge)
		t.set(k, exps)
		n := 0
		for _, e := range exps[1:] {
			if portConflict(exps[0].GetPorts(), e.GetPorts()) != "" {
				n++
			}
		}
		if n > 0 {
			b.conflicts[k] = n
			b.nConflict += n
		}
	}
	s.exports = t.done()
	empty(&b.dirtyExports)
}

// buildEndpoints judges again the endpoints of the groups that changed:
// admitted ones sorted by ID, the others kept as rejected.
func (b *snapshotBuilder) buildEndpoints(s *Snapshot) {
	if len(b.dirtyGroups) == 0 {
		return
	}
	t := s.endpoints.txn()
	for g := range b.dirtyGroups {
		recs := b.endpoints[g.cluster][g.key]
		if _, ok := b.announced[g.cluster]; !ok {
			b.dirtyDomains[g.cluster] = struct{}{}
		}
		if len(recs) == 0 {
			t.del(g)
			continue
		}
		policy := s.serverPolicy(g.cluster, g.key, b.announced[g.cluster])
		var admitted []*straitv1.Endpoint
		for _, r := range recs {
			if _, ok := b.rejected[r]; ok {
				delete(b.rejected, r)
				b.dirtyRejected = true
			}
			ep := r.msg.(*straitv1.Endpoint)
			sid, err := spiffeid.FromString(ep.GetSpiffeId())
			if err == nil {
				err = policy.Check(sid)
			} else {
				err = &ServerNotAllowedError{Allowed: policy.String(), Problem: fmt.Sprintf("spiffe_id %q: %v", ep.GetSpiffeId(), err)}
			}
			if err != nil {
				b.rejected[r] = RejectedEndpoint{Record: r.endpointRecord(), Err: err}
				b.dirtyRejected = true
				continue
			}
			admitted = append(admitted, ep)
		}
		slices.SortFunc(admitted, func(a, b *straitv1.Endpoint) int { return cmp.Compare(a.GetId(), b.GetId()) })
		if len(admitted) == 0 {
			t.del(g)
		} else {
			t.set(g, admitted[:len(admitted):len(admitted)])
		}
	}
	s.endpoints = t.done()
	empty(&b.dirtyGroups)
}

// buildTrustDomains works out again the trust domain of the clusters that
// changed: the one their gateways announce, else the trust domain of one
// of their admitted endpoints' SPIFFE IDs.
func (b *snapshotBuilder) buildTrustDomains(s *Snapshot) {
	if len(b.dirtyDomains) == 0 {
		return
	}
	t := s.trustDomains.txn()
	for c := range b.dirtyDomains {
		td := b.announced[c]
		if td == "" {
			td = b.endpointTrustDomain(s, c)
		}
		if td == s.trustDomains.at(c) {
			continue
		}
		// The next snapshot remembers it (Next).
		b.dirtyAnnounce[c] = struct{}{}
		if td == "" {
			t.del(c)
		} else {
			t.set(c, td)
		}
	}
	s.trustDomains = t.done()
	empty(&b.dirtyDomains)
}

// endpointTrustDomain is the first, by name, of the trust domains of a
// cluster's admitted endpoints, or "".
func (b *snapshotBuilder) endpointTrustDomain(s *Snapshot, cluster string) string {
	out := ""
	for k := range b.endpoints[cluster] {
		for _, ep := range s.endpoints.at(clusterService{cluster, k}) {
			if id, err := spiffeid.FromString(ep.GetSpiffeId()); err == nil {
				if td := id.TrustDomain().Name(); out == "" || td < out {
					out = td
				}
			}
		}
	}
	return out
}

// buildBundles picks the bundle of each trust domain that changed.
func (b *snapshotBuilder) buildBundles(s *Snapshot) {
	if len(b.dirtyBundles) == 0 {
		return
	}
	t := s.bundles.txn()
	for td := range b.dirtyBundles {
		if m := lastByID(b.bundles[td]); m != nil {
			t.set(td, m)
		} else {
			t.del(td)
		}
	}
	s.bundles = t.done()
	empty(&b.dirtyBundles)
}

// buildConfigs picks the configuration of each cluster that changed.
func (b *snapshotBuilder) buildConfigs(s *Snapshot) {
	if len(b.dirtyConfigs) == 0 {
		return
	}
	t := s.clusterConfig.txn()
	for c := range b.dirtyConfigs {
		m := lastByID(b.configs[c])
		switch {
		case c == "":
			s.globalConfig = m
		case m != nil:
			t.set(c, m)
		default:
			t.del(c)
		}
	}
	s.clusterConfig = t.done()
	empty(&b.dirtyConfigs)
}

// lastByID returns the value of the greatest id (a deterministic pick
// among records that claim the same name), or nil.
func lastByID[V any](m map[string]*V) *V {
	var best string
	var out *V
	for id, v := range m {
		if out == nil || id > best {
			best, out = id, v
		}
	}
	return out
}

// clusterList lists, sorted, every cluster with a gateway or an export.
func (b *snapshotBuilder) clusterList() []string {
	out := make([]string, 0, len(b.exportsOf)+len(b.gateways))
	for c := range b.exportsOf {
		out = append(out, c)
	}
	for c := range b.gateways {
		if b.exportsOf[c] == 0 {
			out = append(out, c)
		}
	}
	slices.Sort(out)
	return out
}

func compareServiceKey(a, b ServiceKey) int {
	return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
}

// empty empties a map of changes. A Go map never shrinks, so a large one
// (the first publish after a list touches every record) is replaced
// rather than cleared: it would otherwise hold its buckets for good.
func empty[K comparable, V any](m *map[K]V) {
	if len(*m) > 1024 {
		*m = make(map[K]V)
		return
	}
	clear(*m)
}
