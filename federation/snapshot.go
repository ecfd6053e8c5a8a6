package federation

import (
	"cmp"
	"slices"
	"sync"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// Record is one decoded, validated record of the keyspace.
type Record struct {
	// Key is the etcd key and Info what it says.
	Key  string
	Info KeyInfo
	// ModRevision is the etcd revision of the record's last change.
	ModRevision int64
	// Message is one of *straitv1.Gateway, *straitv1.Export,
	// *straitv1.Endpoint, *straitv1.TrustBundle or *straitv1.GatewayConfig,
	// matching Info.Kind.
	Message proto.Message
}

// Snapshot is an immutable view of the keyspace at one etcd revision. Its
// methods are safe for concurrent use and the messages they return must not
// be modified.
//
// A cache derives each snapshot from the previous one (snapshotBuilder):
// its maps are persistent and share everything a change did not touch.
type Snapshot struct {
	revision      int64
	gateways      pmap[string, []*straitv1.Gateway]          // by cluster, sorted by ID
	exports       pmap[ServiceKey, []*straitv1.Export]       // by service, oldest first
	endpoints     pmap[clusterService, []*straitv1.Endpoint] // admitted, by cluster and service, sorted by ID
	bundles       pmap[string, *straitv1.TrustBundle]        // by trust domain
	globalConfig  *straitv1.GatewayConfig
	clusterConfig pmap[string, *straitv1.GatewayConfig]
	// trustDomains by cluster: from its gateways' records, else the one
	// the previous snapshot knew while the cluster has an export or an
	// endpoint record (Next), else from its admitted endpoints' SPIFFE IDs.
	trustDomains pmap[string, string]
	// rejected are the endpoint records left out because their SPIFFE ID
	// may not serve their service, sorted by key.
	rejected []RejectedEndpoint
	// clusters and services are the sorted lists Clusters and Services
	// copy; conflicts counts the exports in conflict.
	clusters  []string
	services  []ServiceKey
	conflicts int
	// resolved memoizes Service: ServiceKey → GlobalService. The snapshot
	// is immutable, so a resolution never goes stale.
	resolved sync.Map
	// configs memoizes Config: cluster → *GatewayConfig. Gateways and
	// proxies read the failover policy on every new connection.
	configs sync.Map
}

// NewSnapshot builds a snapshot at revision from records. Records of an
// unknown kind or with a message of the wrong type are ignored: validating
// them is the caller's job.
func NewSnapshot(revision int64, records []Record) *Snapshot {
	return buildSnapshot(revision, records, nil)
}

// Next builds the snapshot that follows s at revision from records, as
// NewSnapshot does, except that a cluster no gateway record announces keeps
// the trust domain s knew for it while the cluster still has an export or
// an endpoint record. Its identity does not change while its gateways are
// gone (all dead, or restarting faster than every watcher hears of it):
// its endpoints stay admitted, and a caller whose snapshot lags behind its
// gateway's still accepts the servers of that cluster's exports. A gateway
// record announcing another trust domain replaces the remembered one.
//
// A Cache derives each snapshot from the previous one incrementally, with
// the same result as Next over all its records.
func (s *Snapshot) Next(revision int64, records []Record) *Snapshot {
	return buildSnapshot(revision, records, s)
}

// emptySnapshot is the snapshot of no records.
func emptySnapshot() *Snapshot { return &Snapshot{} }

// compareExportAge orders exports oldest first, then by cluster name, so
// that conflict resolution is deterministic.
func compareExportAge(a, b *straitv1.Export) int {
	// Seconds then nanos orders as AsTime does (nil is the Unix epoch),
	// without converting on every comparison.
	ta, tb := a.GetCreatedAt(), b.GetCreatedAt()
	return cmp.Or(cmp.Compare(ta.GetSeconds(), tb.GetSeconds()), cmp.Compare(ta.GetNanos(), tb.GetNanos()),
		cmp.Compare(a.GetCluster(), b.GetCluster()))
}

// Revision is the etcd revision the snapshot reflects.
func (s *Snapshot) Revision() int64 { return s.revision }

// Clusters lists, sorted, every cluster that has a live gateway or an export.
func (s *Snapshot) Clusters() []string {
	return slices.Clone(s.clusters)
}

// Gateways returns the live gateways of a cluster, sorted by ID.
func (s *Snapshot) Gateways(cluster string) []*straitv1.Gateway { return s.gateways.at(cluster) }

// ClusterAlive reports whether a cluster has at least one live gateway that
// is not draining. The gateways' leases are the cluster's health signal: when
// they expire, its exports stop being candidates.
func (s *Snapshot) ClusterAlive(cluster string) bool {
	for _, g := range s.gateways.at(cluster) {
		if !g.GetDraining() {
			return true
		}
	}
	return false
}

// TrustDomain returns the trust domain a cluster's gateways announce or,
// while it has no gateway record, the one its endpoints' SPIFFE IDs name; ""
// when neither is known.
func (s *Snapshot) TrustDomain(cluster string) string { return s.trustDomains.at(cluster) }

// Exports returns every export of a service, oldest first.
func (s *Snapshot) Exports(key ServiceKey) []*straitv1.Export { return s.exports.at(key) }

// Services lists every exported service, sorted.
func (s *Snapshot) Services() []ServiceKey {
	return slices.Clone(s.services)
}

// Export returns a cluster's export of a service, or nil.
func (s *Snapshot) Export(cluster string, key ServiceKey) *straitv1.Export {
	for _, e := range s.exports.at(key) {
		if e.GetCluster() == cluster {
			return e
		}
	}
	return nil
}

// Endpoints returns a cluster's endpoints of a service, ready or not.
func (s *Snapshot) Endpoints(cluster string, key ServiceKey) []*straitv1.Endpoint {
	return slices.Clone(s.endpoints.at(clusterService{cluster, key}))
}

// ReadyEndpoints returns a cluster's ready endpoints of a service.
func (s *Snapshot) ReadyEndpoints(cluster string, key ServiceKey) []*straitv1.Endpoint {
	var out []*straitv1.Endpoint
	for _, ep := range s.endpoints.at(clusterService{cluster, key}) {
		if ep.GetReady() {
			out = append(out, ep)
		}
	}
	return out
}

// Bundle returns the bundle of a trust domain, or nil.
func (s *Snapshot) Bundle(trustDomain string) *straitv1.TrustBundle { return s.bundles.at(trustDomain) }

// Bundles returns every trust bundle, sorted by trust domain.
func (s *Snapshot) Bundles() []*straitv1.TrustBundle {
	out := make([]*straitv1.TrustBundle, 0, s.bundles.len())
	s.bundles.all(func(_ string, b *straitv1.TrustBundle) { out = append(out, b) })
	slices.SortFunc(out, func(a, b *straitv1.TrustBundle) int { return cmp.Compare(a.GetTrustDomain(), b.GetTrustDomain()) })
	return out
}

// Config returns the gateway configuration of a cluster: the global
// configuration with the cluster's own fields set over it (a list the
// cluster sets, such as failover.region_order, replaces the global one
// rather than extending it). It never returns nil; zero fields mean "the
// default". It is computed once per snapshot and must not be modified.
func (s *Snapshot) Config(cluster string) *straitv1.GatewayConfig {
	if v, hit := s.configs.Load(cluster); hit {
		return v.(*straitv1.GatewayConfig)
	}
	v, _ := s.configs.LoadOrStore(cluster, s.mergeConfig(cluster))
	return v.(*straitv1.GatewayConfig)
}

// mergeConfig computes Config.
func (s *Snapshot) mergeConfig(cluster string) *straitv1.GatewayConfig {
	out := &straitv1.GatewayConfig{}
	if s.globalConfig != nil {
		proto.Merge(out, s.globalConfig)
	}
	if c := s.clusterConfig.at(cluster); c != nil {
		overlay(out.ProtoReflect(), c.ProtoReflect())
	}
	return out
}

// overlay sets every field src sets onto dst: messages field by field,
// lists and scalars replaced whole.
func overlay(dst, src protoreflect.Message) {
	src.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Message() != nil && !fd.IsList() && !fd.IsMap() && dst.Has(fd) {
			overlay(dst.Mutable(fd).Message(), v.Message())
			return true
		}
		dst.Set(fd, v)
		return true
	})
}

// Conflict reports an export whose port definitions disagree with those of
// the oldest export of the same service.
type Conflict struct {
	Cluster string
	Reason  string
}

// GlobalService is a service as the whole federation sees it.
type GlobalService struct {
	Key ServiceKey
	// Ports are the ports of the oldest export: on a conflict it wins.
	Ports []*straitv1.ServicePort
	// Clusters export the service and have a live gateway, in export age
	// order (oldest first).
	Clusters []string
	// Conflicts lists exports whose ports disagree with Ports.
	Conflicts []Conflict
}

// Exporters lists the clusters that export a service, live gateway or
// not, oldest export first. Who may serve a service is a property of its
// exports, not of which gateways are up at this instant. The slice is new.
func (s *Snapshot) Exporters(key ServiceKey) []string {
	exps := s.exports.at(key)
	out := make([]string, 0, len(exps))
	for _, e := range exps {
		out = append(out, e.GetCluster())
	}
	return out
}

// Service resolves a global service. ok is false when no cluster exports it.
// The result is computed once per snapshot and shared: its slices must not
// be modified.
func (s *Snapshot) Service(key ServiceKey) (svc GlobalService, ok bool) {
	if v, hit := s.resolved.Load(key); hit {
		return v.(GlobalService), true
	}
	svc, ok = s.resolveService(key)
	if ok {
		s.resolved.Store(key, svc)
	}
	return svc, ok
}

// resolveService computes Service.
func (s *Snapshot) resolveService(key ServiceKey) (svc GlobalService, ok bool) {
	exps := s.exports.at(key)
	if len(exps) == 0 {
		return GlobalService{}, false
	}
	svc = GlobalService{Key: key, Ports: exps[0].GetPorts()}
	for _, e := range exps {
		if s.ClusterAlive(e.GetCluster()) {
			svc.Clusters = append(svc.Clusters, e.GetCluster())
		}
		if e != exps[0] {
			if reason := portConflict(exps[0].GetPorts(), e.GetPorts()); reason != "" {
				svc.Conflicts = append(svc.Conflicts, Conflict{Cluster: e.GetCluster(), Reason: reason})
			}
		}
	}
	// Full slice expressions: a caller's append never writes into the
	// shared arrays.
	svc.Ports = svc.Ports[:len(svc.Ports):len(svc.Ports)]
	svc.Clusters = svc.Clusters[:len(svc.Clusters):len(svc.Clusters)]
	svc.Conflicts = svc.Conflicts[:len(svc.Conflicts):len(svc.Conflicts)]
	return svc, true
}

// HasPort reports whether the service serves port (TCP).
func (g GlobalService) HasPort(port uint32) bool {
	for _, p := range g.Ports {
		if p.GetPort() == port {
			return true
		}
	}
	return false
}

// portConflict explains how ports differs from want, or returns "".
func portConflict(want, got []*straitv1.ServicePort) string {
	byName := map[string]*straitv1.ServicePort{}
	for _, p := range want {
		byName[p.GetName()] = p
	}
	for _, p := range got {
		w, ok := byName[p.GetName()]
		switch {
		case !ok:
			return "port " + p.GetName() + " is not defined by the oldest export"
		case w.GetPort() != p.GetPort() || w.GetProtocol() != p.GetProtocol():
			return "port " + p.GetName() + " differs from the oldest export"
		}
	}
	if len(got) != len(want) {
		return "the oldest export defines a different set of ports"
	}
	return ""
}

// RejectedEndpoint is an endpoint record the snapshot left out because the
// SPIFFE ID it names may not serve its service.
type RejectedEndpoint struct {
	Record Record
	// Err says why; it matches ErrServerNotAllowed.
	Err error
}

// RejectedEndpoints lists, sorted by key, the endpoint records left out
// because the SPIFFE ID they name may not serve their service: it is not a
// workload of the service's namespace in the cluster's trust domain (as the
// cluster's gateways announce it), or not among the service accounts the
// cluster's export lists in servers. No method of the snapshot returns
// them. The slice must not be modified.
func (s *Snapshot) RejectedEndpoints() []RejectedEndpoint { return s.rejected }

// ServerPolicy returns who may serve a cluster's endpoints of a service:
// the cluster's export of it (or the default, when it exports none) in the
// trust domain the cluster's gateways announce (zero when none does).
func (s *Snapshot) ServerPolicy(cluster string, key ServiceKey) ServerPolicy {
	return s.serverPolicy(cluster, key, s.trustDomains.at(cluster))
}

func (s *Snapshot) serverPolicy(cluster string, key ServiceKey, td string) ServerPolicy {
	// A malformed trust domain leaves the zero value, which callers that
	// know their own replace; the gateway record was validated.
	d, _ := spiffeid.TrustDomainFromString(td)
	return ExportServers(d, key.Namespace, s.Export(cluster, key))
}

// FailoverPolicy is the failover policy of a service as a cluster applies
// it: the policy of the oldest export that sets one (a per-export
// override), else the cluster's live configuration's. It may be nil.
func (s *Snapshot) FailoverPolicy(cluster string, key ServiceKey) *straitv1.FailoverPolicy {
	for _, e := range s.exports.at(key) {
		if f := e.GetFailover(); f != nil {
			return f
		}
	}
	return s.Config(cluster).GetFailover()
}

// BelowHealthy reports whether fewer than minPercent percent of a
// cluster's endpoints of a service are ready: the point at which a
// failover policy spills traffic to the next locality. A zero minPercent,
// or a cluster with no endpoint records at all, is never below.
func (s *Snapshot) BelowHealthy(cluster string, key ServiceKey, minPercent uint32) bool {
	if minPercent == 0 {
		return false
	}
	total, ready := 0, 0
	for _, ep := range s.endpoints.at(clusterService{cluster, key}) {
		total++
		if ep.GetReady() {
			ready++
		}
	}
	return total > 0 && uint32(ready*100) < minPercent*uint32(total)
}
