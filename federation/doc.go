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
// Readers never talk to etcd: they take an immutable [Snapshot] from the
// cache and ask it where a service is served.
//
// Service names on the data path follow one grammar (see [ServiceName]):
//
//	<port>.<service>.<namespace>.<cluster or "any">.strait
package federation
