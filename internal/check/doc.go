// Package check diagnoses a running federation for `strait check`: the
// control plane (etcd), trust bundles, gateways, exports and, for each
// ordered pair of clusters, a signed probe through the real data path.
//
// Each check yields a Result that is ok, warn or fail, with a hint for
// anything not ok. A failing peer is diagnosed by layer, lowest first:
// dns (the advertised host does not resolve), quic (no QUIC answer from
// the address: UDP unreachable, gateway down or a handshake that does not
// complete; the message says whether the host reported the UDP port
// closed), identity (the gateway answered with another SPIFFE ID than
// its cluster's gateway ID, or one its cluster's bundle does not verify)
// and stream (a gateway refused the probe stream, with its code).
//
// The gateway check dials each advertised ingress itself and verifies the
// certificate the gateway presents against the bundles in etcd; it has no
// SVID of its own, so the gateway then refuses the connection, which is
// expected. The path check asks each cluster's gateway (on its admin
// port) to carry a probe to every other cluster; the responder signs the
// nonce chosen here with its SVID, and Run verifies the statement against
// the bundles in etcd and the exact gateway ID of the target cluster, and
// that the responder authenticated the calling cluster's gateway ID.
//
//	rep, err := check.Run(ctx, check.Config{Etcd: cli})
//	if err != nil { ... }
//	for _, r := range rep.Results { fmt.Println(r.Status, r.Check, r.Message) }
//	if rep.Failed() { os.Exit(1) }
package check
