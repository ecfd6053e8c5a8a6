// Package kube connects a Kubernetes cluster to the Strait federation with the
// Multi-Cluster Services API (KEP-1645, group multicluster.x-k8s.io/v1alpha1).
//
// A [Controller] runs beside the gateways of one cluster with RBAC on that
// cluster only; it never holds credentials for another cluster's API server.
// Clusters learn about each other through etcd alone. It does three things:
//
//   - Export. A ServiceExport names a Service of its namespace. The
//     controller writes an Export record (clusters/<cluster>/exports/<ns>/<name>)
//     with the Service's ports and the consumers listed in the ServiceExport
//     annotation strait.io/consumers (comma-separated SPIFFE IDs or trust
//     domains, e.g. "spiffe://east.example.org"). A finalizer
//     (strait.io/export) makes the deletion of a ServiceExport withdraw the
//     Export; Exports written by other means (`strait export`) are never
//     touched.
//   - Status. Each ServiceExport carries the MCS conditions: Valid (the
//     Service exists and can be exported), Ready (the Export is in the
//     federation snapshot), and Conflict (PortConflict when the ports of the
//     cluster's export disagree with those of the oldest export of the same
//     service: the oldest wins, as KEP-1645 prescribes).
//   - Import. For every global service of the federation snapshot whose
//     namespace exists in the cluster, the controller keeps a ServiceImport
//     of type ClusterSetIP (status.clusters lists the clusters serving it), a
//     derived Service without selector ("derived-<name>") whose cluster IP is
//     the ServiceImport's IP, and an EndpointSlice of that Service listing
//     the cluster's gateway egress addresses, every service port mapped to
//     the egress port. What is no longer exported is deleted.
//
// Endpoints are not mirrored from EndpointSlices: each workload's Strait
// proxy registers its own Endpoint record (leased, with the readiness of its
// own health checks and the SPIFFE ID it presents), so the controller only
// exports. Config.Registry is reserved for a future mirroring mode.
//
// The derived EndpointSlices point at the gateway's egress, which expects
// the inner TLS session of a Strait proxy (the SNI names the destination):
// workloads reach an imported service through their proxy. With the
// sidecar's transparent capture (on by default, see package
// federation/kube/inject) the pod's DNS query for
// <service>.<namespace>.svc.clusterset.local is answered by its proxy with a
// virtual IP, and the connection to it is routed by the proxy.
//
// A pod without a sidecar is refused, at once and visibly, never served in
// the clear and never left hanging: its connection to the ServiceImport's
// IP lands on the egress, which resets it (RST, SO_LINGER 0) as soon as the
// first byte is not that of a TLS handshake record (a plaintext client
// such as curl http://, reason not_tls), when its ClientHello names no
// server (no_sni) or is malformed (malformed_hello), or when no ClientHello
// arrives within the gateway's header timeout (default 5s; hello_timeout).
// Each reset is counted in strait_gateway_egress_refusals_total{code=<reason>}
// and logged at WARN (rate limited) with the client's address. A TLS client
// whose ClientHello names something else than a Strait service receives the
// BAD_REQUEST TLS alert (code bad_request), which its TLS library reports.
// Serving such pods (the gateway wrapping their connections in mTLS under
// an identity that says "no sidecar") would make the gateway originate
// workload sessions, which the design keeps end to end between proxies;
// inject the sidecar instead.
//
// Every object the controller creates carries the label
// app.kubernetes.io/managed-by=strait; objects without it are never changed.
// The controller is level-triggered: any change of a watched object or of
// the snapshot, and a periodic resync, runs one full reconciliation.
//
// # Use
//
//	c, err := kube.NewController(kube.Config{
//		Cluster:    "east",
//		RESTConfig: restConfig, // rest.InClusterConfig() in a pod
//		Store:      federation.NewStore(etcd, federation.Keyspace{}),
//		Snapshots:  cache,      // federation.SnapshotSource
//		GatewayAddress: func() string { return "10.0.1.5:15444" },
//	})
//	if err != nil {
//		return err
//	}
//	return c.Run(ctx)
package kube
