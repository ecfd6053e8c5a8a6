package gateway

import (
	"context"
	"crypto/x509"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
)

// DefaultExpiryGrace is how long the streams open on an ingress connection
// may run once the connection's peer certificate expired or its maximum age
// passed, when GatewayConfig.expiry_grace is zero.
const DefaultExpiryGrace = 10 * time.Second

// resultExpired labels the streams refused because their connection's peer
// certificate expired or its maximum age passed
// (strait_gateway_streams_total{result}).
const resultExpired = "expired"

// Log keys of connection lifetimes.
const (
	logNotAfter = "not_after"
	logGrace    = "grace"
	logLimit    = "limit"
)

// What ends a connection's life, the value of logLimit.
const (
	limitPeerCert = "peer_certificate"
	limitOwnCert  = "own_certificate"
	limitMaxAge   = "max_connection_age"
)

// minCloseLinger is the least time an expired connection lingers after its
// last stream ended, for the stream's last bytes to be delivered.
const minCloseLinger = 250 * time.Millisecond

// connLimits returns the maximum connection age (zero: none) and the
// expiry grace of the gateway's cluster, from the newest snapshot.
func (g *Gateway) connLimits() (maxAge, grace time.Duration) {
	gc := g.cfg.Snapshots.Snapshot().Config(g.cfg.Cluster)
	return dur(gc.GetMaxConnectionAge(), 0), dur(gc.GetExpiryGrace(), DefaultExpiryGrace)
}

// peerNotAfter returns the expiry of a connection's peer certificate.
func peerNotAfter(conn *quic.Conn) (time.Time, bool) {
	certs := conn.ConnectionState().TLS.PeerCertificates
	if len(certs) == 0 {
		return time.Time{}, false
	}
	return certs[0].NotAfter, true
}

// ingressLife ends an ingress connection: at its deadline (the peer
// certificate's expiry, or the maximum connection age) it takes no new
// stream, and it closes with ConnErrReconnect as soon as its open streams
// finished, or after the grace period at the latest. The peer's pool
// reconnects on that code without counting a failure.
type ingressLife struct {
	g        *Gateway
	conn     *quic.Conn
	peer     remote
	deadline time.Time
	limit    string
	grace    time.Duration

	open    atomic.Int64 // streams being served
	expired atomic.Bool  // the deadline passed
	once    sync.Once    // closes the connection
	timers  []*time.Timer
	mu      sync.Mutex // guards timers
}

// newIngressLife starts the clock of an accepted connection.
func (g *Gateway) newIngressLife(conn *quic.Conn, peer remote) *ingressLife {
	now := g.cfg.Now()
	maxAge, grace := g.connLimits()
	l := &ingressLife{g: g, conn: conn, peer: peer, grace: grace, limit: limitPeerCert}
	l.deadline, _ = peerNotAfter(conn) // verified: it has a certificate
	if maxAge > 0 && now.Add(maxAge).Before(l.deadline) {
		l.deadline, l.limit = now.Add(maxAge), limitMaxAge
	}
	l.after(l.deadline.Sub(now), l.expire)
	return l
}

func (l *ingressLife) after(d time.Duration, f func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.timers = append(l.timers, time.AfterFunc(d, f))
}

// stop releases the timers once the connection is gone.
func (l *ingressLife) stop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, t := range l.timers {
		t.Stop()
	}
}

// admit reports whether a new stream may be served, counting it when it
// may. A stream arriving past the deadline is refused with
// StreamErrReconnect, which the egress retries on a new connection.
func (l *ingressLife) admit(st *quic.Stream) bool {
	l.open.Add(1)
	if !l.expired.Load() && l.g.cfg.Now().Before(l.deadline) {
		return true
	}
	l.done()
	l.g.m.streams.WithLabelValues(dirIngress, l.peer.cluster, resultExpired).Inc()
	st.CancelRead(StreamErrReconnect)
	st.CancelWrite(StreamErrReconnect)
	return false
}

// done counts the end of a stream; the last one of an expired connection
// closes it.
func (l *ingressLife) done() {
	if l.open.Add(-1) == 0 && l.expired.Load() {
		l.closeSoon("streams finished")
	}
}

// expire runs at the deadline.
func (l *ingressLife) expire() {
	l.expired.Store(true)
	l.g.log.Warn("gateway: ingress connection past its deadline: no new stream, closing once its streams end",
		logPeer, l.peer.id.String(), logPeerAddr, l.conn.RemoteAddr().String(), logLimit, l.limit,
		logNotAfter, l.deadline, logGrace, l.grace)
	l.after(l.grace, func() { l.close("grace period over") })
	if l.open.Load() == 0 {
		l.closeSoon("no stream open")
	}
}

// closeSoon closes the connection after a linger of a few round trips (at
// most until the grace period ends): closing a connection discards the
// stream data not yet delivered, and the last stream may have just written
// its final bytes. New streams are refused meanwhile.
func (l *ingressLife) closeSoon(why string) {
	linger := max(4*l.conn.ConnectionStats().SmoothedRTT, minCloseLinger)
	l.after(linger, func() { l.close(why) })
}

func (l *ingressLife) close(why string) {
	l.once.Do(func() {
		msg := "peer certificate expired"
		if l.limit == limitMaxAge {
			msg = "maximum connection age reached"
		}
		l.g.log.Info("gateway: closing ingress connection", logPeer, l.peer.id.String(), logLimit, l.limit, logErr, why)
		_ = l.conn.CloseWithError(ConnErrReconnect, msg)
	})
}

// poolRenewAt is when the pool stops opening streams on a connection and
// replaces it: a quarter of the remaining life before the first of its own
// certificate's expiry, the peer's, and the maximum connection age. SVIDs
// rotate at half life, so the replacement presents (and meets) rotated
// certificates; the margin also absorbs clock skew between gateways.
func poolRenewAt(dialed time.Time, own, peer *x509.Certificate, maxAge time.Duration) (time.Time, string) {
	end, limit := time.Time{}, ""
	consider := func(t time.Time, l string) {
		if !t.IsZero() && (end.IsZero() || t.Before(end)) {
			end, limit = t, l
		}
	}
	if own != nil {
		consider(own.NotAfter, limitOwnCert)
	}
	if peer != nil {
		consider(peer.NotAfter, limitPeerCert)
	}
	if maxAge > 0 {
		consider(dialed.Add(maxAge), limitMaxAge)
	}
	if end.IsZero() {
		return time.Time{}, ""
	}
	return end.Add(-max(end.Sub(dialed), 0) / 4), limit
}

// isReconnect reports whether err is the ingress telling the pool to
// reconnect: the connection closed with ConnErrReconnect, or a stream
// refused with StreamErrReconnect past the connection's deadline.
func isReconnect(err error) bool {
	var ae *quic.ApplicationError
	if errors.As(err, &ae) && ae.Remote && ae.ErrorCode == ConnErrReconnect {
		return true
	}
	var se *quic.StreamError
	return errors.As(err, &se) && se.Remote && se.ErrorCode == StreamErrReconnect
}

// closedForReconnect reports whether a pooled connection was closed by its
// peer with ConnErrReconnect.
func closedForReconnect(c *pconn) bool {
	return c.Context().Err() != nil && isReconnect(context.Cause(c.Context()))
}
