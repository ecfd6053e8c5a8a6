package gateway

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"strings"

	"github.com/quic-go/quic-go"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/strait-mesh/strait/federation"
	"github.com/strait-mesh/strait/gateway/tunnel"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
	"github.com/strait-mesh/strait/trust"
)

// gatewayPathPrefix starts the path of every gateway SPIFFE ID:
// spiffe://<td>/strait/gateway/<cluster>.
const gatewayPathPrefix = "/strait/gateway/"

// gatewayCluster returns the cluster named by a gateway SPIFFE ID.
func gatewayCluster(id spiffeid.ID) (string, error) {
	cluster, ok := strings.CutPrefix(id.Path(), gatewayPathPrefix)
	if !ok {
		return "", fmt.Errorf("gateway: %s is not a gateway ID", id)
	}
	if err := federation.ValidateLabel(cluster); err != nil {
		return "", fmt.Errorf("gateway: %s is not a gateway ID: %w", id, err)
	}
	return cluster, nil
}

// authorizePeerGateway accepts, at the ingress, the SVID of a gateway of a
// cluster the federation knows, in the trust domain the federation records
// for that cluster (its gateways' records, else its endpoints'), read from
// the live snapshot at each handshake; go-spiffe has verified the SVID
// against the bundle of its own trust domain. Anything else is refused with
// a *trust.UnauthorizedError: a workload SVID, a gateway ID naming a
// cluster without records (which would otherwise label metrics and logs
// with a cluster of the peer's choosing), or a cluster claimed from another
// trust domain. A gateway that has just started is refused until its
// record reaches this gateway's snapshot; its pool retries.
func (g *Gateway) authorizePeerGateway(id spiffeid.ID, _ [][]*x509.Certificate) error {
	cluster, err := gatewayCluster(id)
	if err != nil {
		return &trust.UnauthorizedError{ID: id, Reason: "not a gateway identity"}
	}
	switch td := g.cfg.Snapshots.Snapshot().TrustDomain(cluster); td {
	case "":
		return &trust.UnauthorizedError{ID: id, Reason: fmt.Sprintf("cluster %s has no record in the federation", cluster)}
	case id.TrustDomain().Name():
		return nil
	default:
		return &trust.UnauthorizedError{ID: id, Reason: fmt.Sprintf("cluster %s belongs to trust domain %s", cluster, td)}
	}
}

// serverTLS is the ingress's TLS configuration: mutual authentication with
// the SVIDs of the federation's gateways (authorizePeerGateway) verified by
// trust (each peer against its own trust domain's
// bundle, typed leaf and key-usage checks, on every connection), TLS 1.3, no
// session tickets (so no resumption across bundle changes and no 0-RTT).
func (g *Gateway) serverTLS() (*tls.Config, error) {
	c, err := trust.ServerTLSConfig(trust.TLSConfig{SVID: g.cfg.SVIDs, Bundles: g.cfg.Bundles, Authorizer: g.authorizePeerGateway, Metrics: g.cfg.TrustMetrics})
	if err != nil {
		return nil, fmt.Errorf("gateway: ingress TLS: %w", err)
	}
	c.NextProtos = []string{tunnel.ALPN}
	return c, nil
}

// clientTLS is the configuration to dial a remote gateway that must present
// peer.
func (g *Gateway) clientTLS(peer spiffeid.ID) (*tls.Config, error) {
	c, err := trust.ClientTLSConfig(trust.TLSConfig{SVID: g.cfg.SVIDs, Bundles: g.cfg.Bundles, Authorizer: tlsconfig.AuthorizeID(peer), Metrics: g.cfg.TrustMetrics})
	if err != nil {
		return nil, fmt.Errorf("gateway: dial TLS: %w", err)
	}
	c.NextProtos = []string{tunnel.ALPN}
	return c, nil
}

// peerID returns the SPIFFE ID of the peer of an established connection.
func peerID(conn *quic.Conn) (spiffeid.ID, error) {
	certs := conn.ConnectionState().TLS.PeerCertificates
	if len(certs) == 0 {
		return spiffeid.ID{}, fmt.Errorf("gateway: peer presented no certificate")
	}
	id, err := x509svid.IDFromCert(certs[0])
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("gateway: peer identity: %w", err)
	}
	return id, nil
}

// recordPeerID returns the identity a remote gateway must present: its
// record's spiffe_id, which must be the gateway ID of the record's cluster
// in the record's trust domain.
func recordPeerID(gw *straitv1.Gateway) (spiffeid.ID, error) {
	id, err := spiffeid.FromString(gw.GetSpiffeId())
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("%w %s/%s: %w", ErrBadPeerRecord, gw.GetCluster(), gw.GetId(), err)
	}
	cluster, err := gatewayCluster(id)
	if err != nil || cluster != gw.GetCluster() || id.TrustDomain().Name() != gw.GetTrustDomain() {
		return spiffeid.ID{}, fmt.Errorf("%w %s/%s: spiffe_id %s does not match cluster and trust domain", ErrBadPeerRecord, gw.GetCluster(), gw.GetId(), id)
	}
	return id, nil
}
