package gateway

import (
	"context"
	"crypto/tls"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/strait-mesh/strait/gateway/tunnel"
	"github.com/strait-mesh/strait/trust"
)

// dialAs opens a raw tunnel connection to a gateway's ingress with the
// gateway SVID of cluster, as a remote gateway would.
func (w *world) dialAs(t testing.TB, cluster string, to *running) *quic.Conn {
	t.Helper()
	ca := w.cas[cluster]
	id, _ := trust.GatewayID(ca.TrustDomain(), cluster)
	svid, err := ca.IssueX509SVID(id, 0)
	if err != nil {
		t.Fatal(err)
	}
	tc := tlsconfig.MTLSClientConfig(svid, w.bundles, tlsconfig.AuthorizeAny())
	tc.NextProtos = []string{tunnel.ALPN}
	tc.MinVersion = tls.VersionTLS13
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := quic.DialAddr(ctx, to.IngressAddr().String(), tc, &quic.Config{MaxIdleTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.CloseWithError(0, "") })
	return c
}
