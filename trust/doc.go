// Package trust holds Strait's identities: SPIFFE IDs for workloads and
// gateways, the built-in certificate authority, sources of X.509 SVIDs, and
// the per-trust-domain bundles that peers are verified against.
//
// A peer is verified only against the bundle of its own trust domain, never
// against a pool of every root: one compromised domain cannot impersonate
// another.
//
// The pieces fit together like this in a proxy of cluster "a" that accepts
// callers listed by an export:
//
//	metrics, _ := trust.NewMetrics(registry)
//	ca, _ := trust.NewCA(trust.CAConfig{TrustDomain: a, Dir: "/var/lib/strait/ca"})
//	src, _ := trust.NewCASource(trust.CASourceConfig{CA: ca, ID: proxyID, Metrics: metrics})
//	go src.Run(ctx) // rotates at half life
//
//	bundles, _ := trust.NewBundleStore(trust.BundleStoreConfig{
//		TrustDomain: a, Local: src, Metrics: metrics,
//	})
//	// Feed it the TrustBundle records of etcd's trust/ keys:
//	//   bundles.Sync(snapshot.Bundles())
//
//	policy, _ := trust.NewConsumerPolicy(a, export.GetConsumers())
//	conf, _ := trust.ServerTLSConfig(trust.TLSConfig{
//		SVID: src, Bundles: bundles, Authorizer: policy.Authorizer(), Metrics: metrics,
//	})
//	ln := tls.NewListener(tcp, conf)
//
// With SPIRE, a WorkloadSource replaces the CA and the CASource, and the
// spiresync package moves bundles between the SPIRE server and etcd.
//
// A bundle in etcd heals itself: a LocalBundlePublisher watches its own key
// and rewrites it whenever it holds anything but the current bundle
// (deleted, junk, an older record), with sequences (NextSequence) that keep
// increasing across deletions and restarts; a BundleStore never trades a
// held bundle for an invalid or older record, and with KeepDeleted rides
// over the moment between a deletion and its repair.
//
// The certificate and the bundles are looked up at every handshake: SVID
// rotation and bundle updates need no restart and leave established
// connections alone. Session tickets are disabled, so no connection resumes
// past a bundle change.
package trust
