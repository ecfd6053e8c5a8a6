package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/strait-mesh/strait/federation"
	"github.com/strait-mesh/strait/proxy/proxyproto"
	"github.com/strait-mesh/strait/proxy/session"
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
	if p.sessionSrv != nil {
		cfg.NextProtos = []string{session.ALPN}
	}
	return cfg, nil
}

// serveInbound terminates the inner TLS of one connection, connects to the
// application, tells it who the caller is with a PROXY v2 header, and relays.
//
// The application is dialed once the ClientHello has arrived and before the
// ServerHello is sent: when it is down, the handshake fails with an
// internal_error alert, which the source proxy (or the ingress gateway,
// which has seen no byte from here) retries on the next candidate, instead
// of failing a request it has already relayed. The price is that callers
// who turn out to be unauthorized also cost the application a connection,
// closed before any byte (TLS 1.3 sends the client certificate after the
// ServerHello, so the caller cannot be known earlier).
func (p *Proxy) serveInbound(ctx context.Context, base *tls.Config, raw net.Conn) {
	m := p.metrics
	m.active.WithLabelValues(dirInbound).Inc()
	defer m.active.WithLabelValues(dirInbound).Dec()
	log := p.log.With(logDirection, dirInbound, logRemote, raw.RemoteAddr().String())

	var app net.Conn
	defer func() {
		if app != nil {
			_ = app.Close()
		}
	}()
	cfg := base.Clone()
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		if p.sessionSrv != nil && slices.Contains(hello.SupportedProtos, session.ALPN) {
			return nil, nil // a session: each stream dials the application
		}
		c, err := p.dialer.DialContext(hello.Context(), "tcp", p.cfg.AppAddr)
		if err != nil {
			return nil, &appError{err: err}
		}
		app = c
		return nil, nil
	}
	conn := tls.Server(raw, cfg)
	defer conn.Close()
	if err := p.inboundHandshake(ctx, raw, conn); err != nil {
		var ae *appError
		if errors.As(err, &ae) {
			m.connections.WithLabelValues(dirInbound, resultAppError).Inc()
			log.Warn("application unreachable; handshake refused so the caller retries elsewhere", logAddr, p.cfg.AppAddr, logErr, ae.err)
			return
		}
		p.refuseHandshake(log, err)
		if isTimeout(err) {
			// A TLS 1.3 caller is done with its side once it has sent its
			// Finished, and may be relaying its application's bytes: a
			// reset, not an end of stream, tells it the connection failed.
			abort(conn)
		}
		return
	}
	state := conn.ConnectionState()
	p.cfg.TrustMetrics.ObserveTLSHandshake(trust.LayerInner, state)
	peer, err := x509svid.IDFromCert(state.PeerCertificates[0])
	if err != nil { // verified already; cannot happen
		m.connections.WithLabelValues(dirInbound, resultHandshake).Inc()
		return
	}
	log = log.With(logPeerID, peer.String(), logSNI, state.ServerName)
	if err := p.checkSNI(state.ServerName); err != nil {
		p.refuseSNI(log, err)
		return
	}
	if state.NegotiatedProtocol == session.ALPN {
		p.serveSession(ctx, log, conn, peer, state.PeerCertificates[0])
		return
	}
	if !p.cfg.NoProxyHeader {
		err = p.writeProxyHeader(app, raw, peer.String(), state.ServerName)
	}
	if err != nil {
		abort(conn)
		m.connections.WithLabelValues(dirInbound, resultAppError).Inc()
		log.Warn("application connection failed", logAddr, p.cfg.AppAddr, logErr, err)
		return
	}
	defer p.closeAtExpiry(log, state.PeerCertificates[0], conn, app)()
	start := time.Now()
	res := p.relay(conn, app)
	app = nil // the relay closed it
	p.finish(log, dirInbound, res, start, nil)
}

// appError is a failed dial of the application during the handshake.
type appError struct{ err error }

func (e *appError) Error() string { return "proxy: dial application: " + e.err.Error() }
func (e *appError) Unwrap() error { return e.err }

// inboundHandshake runs the server side of the inner handshake on conn
// (over raw) within the handshake timeout, a deadline on raw rather than a
// context: a handshake whose context ends closes raw itself (a FIN, which
// a caller that has finished its side reads as the end of the stream),
// while a deadline leaves the connection to the caller to reset.
func (p *Proxy) inboundHandshake(ctx context.Context, raw net.Conn, conn *tls.Conn) error {
	if err := raw.SetDeadline(time.Now().Add(p.cfg.HandshakeTimeout)); err != nil {
		return err
	}
	if err := conn.HandshakeContext(ctx); err != nil {
		return err
	}
	return raw.SetDeadline(time.Time{})
}

// handshake runs the TLS handshake within the handshake timeout.
func (p *Proxy) handshake(ctx context.Context, conn *tls.Conn) error {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.HandshakeTimeout)
	defer cancel()
	return conn.HandshakeContext(ctx)
}

// checkSNI refuses a connection whose SNI names another service, or no
// service (ErrBadSNI): every caller Strait routes names its destination.
func (p *Proxy) checkSNI(sni string) error {
	name, err := federation.ParseServiceName(sni)
	if err != nil {
		return wrapf("%w: %q: %w", ErrBadSNI, sni, err)
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
