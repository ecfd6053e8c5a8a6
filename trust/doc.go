// Package trust holds Strait's identities: SPIFFE IDs for workloads and
// gateways, the built-in certificate authority, sources of X.509 SVIDs, and
// the per-trust-domain bundles that peers are verified against.
//
// A peer is verified only against the bundle of its own trust domain, never
// against a pool of every root: one compromised domain cannot impersonate
// another.
package trust
