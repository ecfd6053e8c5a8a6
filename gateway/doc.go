// Package gateway is the east-west gateway of a cluster: a QUIC ingress that
// accepts mTLS connections from the gateways of other clusters, an egress that
// routes the cluster's outbound connections by the SNI of their inner
// ClientHello, and the pool of QUIC connections to remote gateways.
//
// Gateways never terminate the inner TLS: the payload is end-to-end mTLS
// between the two proxies. The wire contract (stream header and reply, the
// refusal alert a proxy receives) is in the tunnel subpackage; sni peeks
// ClientHellos and relay copies bytes with TCP half-close and reset
// semantics.
//
// No connection outlives its peer's certificate: at the peer certificate's
// expiry (or GatewayConfig.max_connection_age) an ingress connection takes
// no new stream and closes with ConnErrReconnect once its streams end, or
// after expiry_grace; the pool replaces its connections before its own
// certificate, the peer's or the maximum age end them, and reconnects
// without counting a failure when told to.
//
// A gateway runs until its context is canceled, and drains first:
//
//	g, err := gateway.New(gateway.Config{
//		Cluster:     "west",
//		ID:          "gw-0",
//		TrustDomain: spiffeid.RequireTrustDomainFromString("west.example"),
//		SVIDs:       svidSource,   // x509svid.Source
//		Bundles:     bundleSource, // x509bundle.Source
//		Snapshots:   cache,        // federation.SnapshotSource
//		Registry:    registrar,    // federation.Registry
//	})
//	if err != nil {
//		return err
//	}
//	go func() {
//		<-g.Ready()
//		log.Println("ingress", g.IngressAddr(), "egress", g.EgressAddr())
//	}()
//	return g.Run(ctx) // ctx canceled on SIGTERM
package gateway
