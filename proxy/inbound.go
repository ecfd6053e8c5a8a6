package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/strait-mesh/strait/federation"
	"github.com/strait-mesh/strait/proxy/proxyproto"
	"github.com/strait-mesh/strait/trust"
)

// inboundTLS is the server side of the inner mTLS: the workload SVID,
// callers verified against their own trust domain's bundle (with trust's
// leaf checks, on every connection, resumed or not) and authorized by
// authorizeCaller. A refused caller gets a bad_certificate alert.
func (p *Proxy) inboundTLS() (*tls.Config, error) {
	cfg, err := trust.ServerTLSConfig(trust.TLSConfig{SVID: p.cfg.SVIDs, Bundles: p.cfg.Bundles, Authorizer: p.authorizeCaller, Metrics: p.cfg.TrustMetrics})
	if err != nil {
		return nil, wrapf("inbound TLS: %w", err)
	}
	return cfg, nil
}

// serveInbound terminates the inner TLS of one connection, connects to the
// application, tells it who the caller is with a PROXY v2 header, and relays.
func (p *Proxy) serveInbound(ctx context.Context, cfg *tls.Config, raw net.Conn) {
	m := p.metrics
	m.active.WithLabelValues(dirInbound).Inc()
	defer m.active.WithLabelValues(dirInbound).Dec()
	log := p.log.With(logDirection, dirInbound, logRemote, raw.RemoteAddr().String())

	conn := tls.Server(raw, cfg)
	defer conn.Close()
	if err := p.handshake(ctx, conn); err != nil {
		if errors.Is(err, ErrUnauthorized) {
			m.connections.WithLabelValues(dirInbound, resultUnauthorized).Inc()
			log.Warn("caller refused", logErr, err)
			return
		}
		m.connections.WithLabelValues(dirInbound, resultHandshake).Inc()
		log.Debug("inbound handshake failed", logErr, err)
		return
	}
	state := conn.ConnectionState()
	peer, err := x509svid.IDFromCert(state.PeerCertificates[0])
	if err != nil { // verified already; cannot happen
		m.connections.WithLabelValues(dirInbound, resultHandshake).Inc()
		return
	}
	log = log.With(logPeerID, peer.String(), logSNI, state.ServerName)
	if err := p.checkSNI(state.ServerName); err != nil {
		m.connections.WithLabelValues(dirInbound, resultMisrouted).Inc()
		log.Warn("misrouted connection", logErr, err)
		return
	}
	app, err := p.dialer.DialContext(ctx, "tcp", p.cfg.AppAddr)
	if err == nil && !p.cfg.NoProxyHeader {
		err = p.writeProxyHeader(app, raw, peer.String(), state.ServerName)
	}
	if err != nil {
		if app != nil {
			_ = app.Close()
		}
		abort(conn)
		m.connections.WithLabelValues(dirInbound, resultAppError).Inc()
		log.Warn("application unreachable", logAddr, p.cfg.AppAddr, logErr, err)
		return
	}
	start := time.Now()
	res := p.relay(conn, app)
	p.finish(log, dirInbound, res, start, nil)
}

// handshake runs the TLS handshake within the handshake timeout.
func (p *Proxy) handshake(ctx context.Context, conn *tls.Conn) error {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.HandshakeTimeout)
	defer cancel()
	return conn.HandshakeContext(ctx)
}

// checkSNI refuses a connection whose SNI names another service. An empty
// or unparsable SNI is accepted: the caller authenticated, and the name is
// only a routing hint.
func (p *Proxy) checkSNI(sni string) error {
	name, err := federation.ParseServiceName(sni)
	if err != nil {
		return nil
	}
	if name.Service.Name != p.cfg.Service || name.Service.Namespace != p.cfg.Namespace {
		return wrapf("%w: %s", ErrMisrouted, sni)
	}
	if name.Cluster != federation.AnyCluster && name.Cluster != p.cfg.Cluster {
		return wrapf("%w: %s", ErrMisrouted, sni)
	}
	return nil
}

// writeProxyHeader sends the PROXY v2 header: the caller's address as seen
// by this proxy, its SPIFFE ID and the name it asked for.
func (p *Proxy) writeProxyHeader(app, caller net.Conn, spiffeID, sni string) error {
	h := proxyproto.Header{
		Command:     proxyproto.Proxy,
		Source:      addrPort(caller.RemoteAddr()),
		Destination: addrPort(caller.LocalAddr()),
		TLVs:        []proxyproto.TLV{{Type: proxyproto.TypeSPIFFEID, Value: []byte(spiffeID)}},
	}
	if sni != "" {
		h.TLVs = append(h.TLVs, proxyproto.TLV{Type: proxyproto.TypeAuthority, Value: []byte(sni)})
	}
	if !h.Source.IsValid() || !h.Destination.IsValid() {
		h.Source, h.Destination = netip.AddrPort{}, netip.AddrPort{}
	}
	if _, err := h.WriteTo(app); err != nil {
		return wrapf("write PROXY header: %w", err)
	}
	return nil
}

func addrPort(a net.Addr) netip.AddrPort {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.AddrPort()
	}
	return netip.AddrPort{}
}

// advertiseAddr is the address published in the Endpoint record.
func (p *Proxy) advertiseAddr() string {
	if p.cfg.InboundAdvertiseAddr != "" {
		return p.cfg.InboundAdvertiseAddr
	}
	ap := addrPort(p.inbound.Addr())
	addr := ap.Addr()
	if addr.IsUnspecified() {
		addr = netip.MustParseAddr("127.0.0.1")
	}
	return netip.AddrPortFrom(addr, ap.Port()).String()
}
