// Package dns is the pod-local DNS responder of transparent capture. The
// capture rules send the pod's DNS queries to it; it answers
//
//	<service>.<namespace>.svc.clusterset.local
//
// with a stable virtual IP for every service the federation exports (type A;
// AAAA and other types get an empty answer), NXDOMAIN for other names under
// the domain, and forwards every other query unchanged to the pod's own
// resolver. The proxy maps a connection's original destination back to the
// service with the server's VIPTable.
//
// Virtual IPs come from Config.VIPRange (default 240.240.0.0/16, reserved
// address space that is never routed): a service's address is a hash of its
// name, probing on a collision, so it is the same across restarts unless two
// names collide, and never changes while the process runs.
package dns
