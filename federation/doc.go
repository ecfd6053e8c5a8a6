// Package federation is Strait's control plane on etcd: the keyspace, the
// records stored in it, leased registration of gateways and endpoints, and the
// watch cache every gateway and proxy routes from.
//
// All keys live under one prefix (default "/strait/v1/"):
//
//	clusters/<cluster>/gateways/<id>                         Gateway (leased)
//	clusters/<cluster>/exports/<namespace>/<service>         Export (durable)
//	clusters/<cluster>/endpoints/<namespace>/<service>/<id>  Endpoint (leased)
//	trust/<trust-domain>                                     TrustBundle
//	config/global, config/clusters/<cluster>                 GatewayConfig
//
// Values are binary protobuf records from proto/strait/v1; every key also
// accepts the protojson form (a value whose first non-space byte is '{'), so
// that an operator can write configuration with etcdctl. [DecodeRecord]
// decodes and validates a value against its key; anything invalid is an
// [*InvalidRecordError] matching [ErrInvalidRecord].
//
// Who may serve an export is its [ServerPolicy]: workloads of the export's
// namespace in the exporting cluster's trust domain, narrowed to
// Export.servers. Every Endpoint names the SPIFFE ID that serves it; a
// snapshot leaves out endpoints whose ID their cluster's export does not
// allow ([Snapshot.RejectedEndpoints]), and the cache counts them.
//
// Writers: a [Registrar] keeps leased records (gateways, endpoints) alive and
// re-registers them after a lost lease; a [Store] writes durable intent
// (exports, configuration, trust bundles) with compare-and-swap.
//
// Readers never talk to etcd: a [Cache] lists and watches one or more etcd
// sources and publishes immutable [Snapshot] values; readers take the
// current one with an atomic load and ask it where a service is served. The
// cache survives compaction (re-list and diff), leader loss
// (WithRequireLeader, backoff) and full outages (the last snapshot keeps
// serving, and is persisted to disk for restarts).
//
// Service names on the data path follow one grammar (see [ServiceName]):
//
//	<port>.<service>.<namespace>.<cluster or "any">.strait
package federation
