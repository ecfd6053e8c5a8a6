package proxycmd

import (
	"context"
	"net"

	"github.com/strait-mesh/strait/proxy/capture"
)

// tcpResolver is a pure-Go resolver that asks the system's name servers
// over TCP only, for a proxy whose pod's traffic is captured. The proxy's
// own connections are exempt from the capture rules (its group or its
// mark), so a UDP query of its own leaves a conntrack entry (pod:port →
// server:53, not redirected) for 30 s after its socket closes; an
// application query that the kernel sends from the same port to the same
// server matches that entry, skips the capture's nat chain and reaches the
// cluster's resolver around the proxy (the reason proxy/dns forwards over
// TCP). A TCP query leaves no entry a UDP query can match.
func tcpResolver(mark uint32) *net.Resolver {
	d := net.Dialer{Control: capture.DialerControl(mark)}
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, address string) (net.Conn, error) {
		return d.DialContext(ctx, "tcp", address)
	}}
}
