// Package spiresync moves trust bundles between a SPIRE server and Strait's
// federation keyspace in etcd, so that SPIRE-issued workloads and Strait's
// gateways and proxies trust the same federated trust domains:
//
//   - push: the SPIRE server's own bundle (bundle API GetBundle) is
//     published at trust/<trust-domain> when its X.509 authorities change,
//     with a sequence number above the one published before;
//   - pull: the bundles of the other trust domains found in etcd are
//     validated (CA authorities, sequence never going backwards, the
//     Federates allow-list) and written into SPIRE as federated bundles
//     (BatchSetFederatedBundle). Registration entries that federate with a
//     trust domain then deliver its bundle to workloads.
//
// The Syncer talks to the server's API socket, where SPIRE authorizes local
// callers, and to etcd through two small interfaces that the federation
// store and watch cache satisfy:
//
//	conn, _ := grpc.NewClient("unix:///run/spire/server/api.sock",
//		grpc.WithTransportCredentials(insecure.NewCredentials()))
//	s, _ := spiresync.New(spiresync.Config{
//		Conn: conn, TrustDomain: td,
//		Publisher: store, // federation.Store: PublishBundle
//		Lister: spiresync.BundleListerFunc(func(context.Context) ([]*straitv1.TrustBundle, error) {
//			return cache.Snapshot().Bundles(), nil
//		}),
//	})
//	go s.Run(ctx)
//
// Federated bundles are never deleted from SPIRE by the Syncer: a bundle that
// disappears from etcd stays in SPIRE until an operator removes it.
package spiresync
