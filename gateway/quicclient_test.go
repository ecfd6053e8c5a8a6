package gateway

import (
	"context"
	"crypto/tls"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/strait-mesh/strait/gateway/tunnel"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
	"github.com/strait-mesh/strait/trust"
)

// dialAs opens a raw tunnel connection to a gateway's ingress with the
// gateway SVID of cluster, as a remote gateway would. Like a remote
// gateway, which registers before it dials, it first gives cluster a
// Gateway record unless the federation already knows the cluster: the
// ingress refuses gateways of clusters without one.
func (w *world) dialAs(t testing.TB, cluster string, to *running) *quic.Conn {
	t.Helper()
	ca := w.cas[cluster]
	id, _ := trust.GatewayID(ca.TrustDomain(), cluster)
	if w.reg.src.Snapshot().TrustDomain(cluster) == "" {
		w.reg.Put("dialer/"+cluster, &straitv1.Gateway{
			Cluster: cluster, Id: "dialer", TrustDomain: ca.TrustDomain().Name(), SpiffeId: id.String(),
			Address: "127.0.0.1:1",
		})
	}
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
