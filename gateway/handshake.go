package gateway

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/quic-go/quic-go"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/strait-mesh/strait/trust"
)

// errTooManyHandshakes refuses a connection attempt beyond MaxHandshakes.
var errTooManyHandshakes = errors.New("gateway: too many handshakes in progress")

// Reasons of strait_gateway_ingress_handshake_failures_total beyond the
// trust.HandshakeFailureReason values (the peer's certificate or identity
// was refused).
const (
	// handshakeTooMany: refused before the handshake, MaxHandshakes were in
	// progress.
	handshakeTooMany = "too_many_handshakes"
	// handshakeTimeout: the handshake did not finish in time.
	handshakeTimeout = "timeout"
	// handshakePeerClosed: the peer gave up (for example it refused this
	// gateway's certificate).
	handshakePeerClosed = "peer_closed"
	// connPeerLimit: the handshake completed, but the peer identity
	// already held MaxConnsPerPeer connections or the gateway was stopping.
	connPeerLimit = "connection_limit"
)

// handshakeFailureReasons lists every reason label of
// strait_gateway_ingress_handshake_failures_total.
func handshakeFailureReasons() []string {
	out := []string{handshakeTooMany, handshakeTimeout, handshakePeerClosed, connPeerLimit}
	for _, r := range trust.HandshakeFailureReasons() {
		out = append(out, string(r))
	}
	return out
}

// Log field keys of refused handshakes (see logfields.go for the others).
const (
	logRefusalReason = "reason"
)

// tlsAlertCertificateRequired is the alert crypto/tls sends to a client
// that presented no certificate.
const tlsAlertCertificateRequired = 116

// handshake is the state of one incoming connection attempt, kept in the
// context quic-go derives the connection's context from.
type handshake struct {
	accepted atomic.Bool
	once     sync.Once
	end      func()
	// observe records the TLS parameters of an accepted connection.
	observe func(*quic.Conn)
}

type handshakeKey struct{}

// connContext admits a connection attempt to the TLS handshake. Beyond
// MaxHandshakes attempts in progress it refuses the attempt before any
// cryptography (the peer gets CONNECTION_REFUSED and retries). Every
// attempt that ends without being accepted is counted by reason and logged
// (rate limited).
func (g *Gateway) connContext(ctx context.Context, info *quic.ClientInfo) (context.Context, error) {
	if g.handshakes.Add(1) > int64(g.cfg.MaxHandshakes) {
		g.handshakes.Add(-1)
		g.m.handshakeRefused.Inc()
		g.m.handshakeFails.WithLabelValues(handshakeTooMany).Inc()
		g.m.handshakeLog.Warn(g.log, "gateway: ingress handshake refused", logPeerAddr, info.RemoteAddr.String(),
			logRefusalReason, handshakeTooMany)
		return nil, errTooManyHandshakes
	}
	hs := &handshake{observe: func(c *quic.Conn) {
		g.cfg.TrustMetrics.ObserveTLSHandshake(trust.LayerTunnel, c.ConnectionState().TLS)
	}}
	hs.end = func() { hs.once.Do(func() { g.handshakes.Add(-1) }) }
	ctx = context.WithValue(ctx, handshakeKey{}, hs)
	context.AfterFunc(ctx, func() {
		if !hs.accepted.Load() {
			g.handshakeFailed(info, context.Cause(ctx))
		}
		hs.end()
	})
	return ctx, nil
}

// handshakeFailed counts and logs an attempt that ended, with cause,
// without being accepted.
func (g *Gateway) handshakeFailed(info *quic.ClientInfo, cause error) {
	reason, peer := classifyHandshakeFailure(cause)
	g.m.handshakeFails.WithLabelValues(reason).Inc()
	args := []any{logPeerAddr, info.RemoteAddr.String(), logRefusalReason, reason, logErr, cause}
	if !peer.IsZero() {
		args = append(args, logPeer, peer.String())
	}
	g.m.handshakeLog.Warn(g.log, "gateway: ingress handshake refused", args...)
}

// connRefused counts and logs a connection refused once its handshake
// completed; peer may be zero.
func (g *Gateway) connRefused(conn *quic.Conn, peer spiffeid.ID, reason string, err error) {
	g.m.handshakeFails.WithLabelValues(reason).Inc()
	args := []any{logPeerAddr, conn.RemoteAddr().String(), logRefusalReason, reason, logErr, err}
	if !peer.IsZero() {
		args = append(args, logPeer, peer.String())
	}
	g.m.handshakeLog.Warn(g.log, "gateway: ingress connection refused", args...)
}

// classifyHandshakeFailure tells why a handshake failed from the error that
// ended its connection, and which SPIFFE ID the peer claimed when its
// certificate was judged.
func classifyHandshakeFailure(cause error) (string, spiffeid.ID) {
	var (
		refused   *trust.PeerRefusedError
		handshake *quic.HandshakeTimeoutError
		idle      *quic.IdleTimeoutError
		transport *quic.TransportError
		app       *quic.ApplicationError
	)
	switch {
	case errors.As(cause, &refused):
		return string(refused.Reason), refused.ID
	case errors.As(cause, &handshake), errors.As(cause, &idle):
		return handshakeTimeout, spiffeid.ID{}
	case errors.As(cause, &transport) && transport.Remote, errors.As(cause, &app) && app.Remote:
		return handshakePeerClosed, spiffeid.ID{}
	case errors.As(cause, &transport) && transport.ErrorCode == quic.TransportErrorCode(0x100+tlsAlertCertificateRequired):
		return string(trust.ReasonBadCertificate), spiffeid.ID{}
	}
	return string(trust.ClassifyHandshakeError(cause)), spiffeid.ID{}
}

// markAccepted records that conn completed its handshake, and the key
// exchange and cipher suite it negotiated (strait_tls_handshakes_total,
// layer tunnel).
func markAccepted(conn *quic.Conn) {
	if hs, ok := conn.Context().Value(handshakeKey{}).(*handshake); ok {
		hs.accepted.Store(true)
		hs.end()
		hs.observe(conn)
	}
}
