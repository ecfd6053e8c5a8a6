// Package gateway is the east-west gateway of a cluster: a QUIC ingress that
// accepts mTLS connections from the gateways of other clusters, an egress that
// routes the cluster's outbound connections by the SNI of their inner
// ClientHello, and the pool of QUIC connections to remote gateways.
//
// Gateways never terminate the inner TLS: the payload is end-to-end mTLS
// between the two proxies.
package gateway
