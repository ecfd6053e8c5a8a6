// Package capture redirects a pod's outbound TCP connections and DNS
// queries to its Strait proxy, the way Istio's init container does, and
// tells the proxy where a redirected connection was going.
//
// Install adds, in the nat table of the current network namespace (run it
// inside the pod's, as `strait proxy init` does), one chain jumped to from
// OUTPUT:
//
//	STRAIT_OUTPUT: traffic the proxy itself sends (SO_MARK Mark, or an
//	               excluded UID) RETURNs; so does traffic to loopback and to
//	               excluded networks and ports;
//	               UDP and TCP to port 53 → DNSPort (the proxy's DNS responder);
//	               other TCP → OutboundPort (the proxy's transparent listener).
//
// Cleanup removes the jumps and the chain and is a no-op when they are
// absent, so both commands are idempotent. The rules are IPv4 only
// (iptables); IPv6 traffic is not captured.
//
// The proxy marks every connection it dials with Mark (see DialerControl)
// so that its own traffic is not captured again, and reads the original
// destination of a redirected connection with OriginalDst.
package capture
