// Package probe is the signed end-to-end path probe of Strait's gateways.
//
// Every gateway serves a built-in probe responder on its QUIC ingress under
// a reserved service name (Namespace/Service, port Port); no export can
// take that name. A caller gateway opens a tunnel stream with that header,
// writes a nonce of NonceSize bytes chosen by whoever asked for the probe
// (`strait check`), and the responder answers ACCEPTED followed by one
// Signed frame: a Statement (the nonce, who answered, whom it
// authenticated as the caller) signed with the responder's X.509 SVID,
// with the SVID chain attached.
//
// The party that chose the nonce verifies the statement with Verify
// against the federation's trust bundles and the exact SPIFFE ID it
// expects. A valid statement proves, end to end, that the stream was routed
// to the expected cluster's gateway, that this gateway holds a private key
// certified by its cluster's current roots, and (through Statement.Caller)
// which caller identity the responder authenticated: so both directions of
// trust hold, not just reachability.
//
//	nonce := make([]byte, probe.NonceSize)
//	rand.Read(nonce)
//	// ... the caller gateway carries the probe and returns s ...
//	st, err := probe.Verify(s, bundles, probe.VerifyOptions{Want: westID, Nonce: nonce})
package probe
