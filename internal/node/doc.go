// Package node wires what every Strait process of a cluster runs beside its
// main component (a gateway or a proxy): the etcd watch cache, a registrar
// for its leased records, the trust bundle store kept in step with the
// bundles published in etcd, and, where the process holds the cluster's
// built-in CA, the publication of that CA's bundle.
//
//	n, err := node.New(node.Config{Cluster: "east", TrustDomain: td, Etcd: cli, LocalBundle: ca})
//	go n.Run(ctx)
//	gw, err := gateway.New(gateway.Config{Snapshots: n.Cache, Registry: n.Registrar, Bundles: n.Bundles, ...})
package node
