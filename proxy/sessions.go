package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/strait-mesh/strait/federation"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
	"github.com/strait-mesh/strait/proxy/session"
	"github.com/strait-mesh/strait/trust"
)

// SessionMode selects whether the proxy pools inner mTLS sessions
// (package proxy/session) or makes one inner handshake per connection.
type SessionMode int

const (
	// SessionsDefault is DefaultSessionMode.
	SessionsDefault SessionMode = iota
	// SessionsOn offers and accepts sessions (ALPN): new connections to a
	// destination that has a session open take one round trip. A peer
	// without sessions still gets one connection per handshake.
	SessionsOn
	// SessionsOff neither offers nor accepts sessions.
	SessionsOff
)

// DefaultSessionMode is Config.Sessions' default.
const DefaultSessionMode = SessionsOff

// PipelineMode selects whether a new connection's first bytes go out with
// the request that opens its stream on a pooled session (one round trip
// to the answer), or wait for the destination's answer (two, as a new
// handshake costs).
type PipelineMode int

const (
	// PipelineDefault is DefaultPipelineMode.
	PipelineDefault PipelineMode = iota
	// PipelineOn sends a new stream's bytes with its request on a session
	// that heard from its peer lately (session.Config.Pipeline says how
	// lately). The price: when the path dies unnoticed (a gateway
	// SIGKILLed), the connections opened until the session goes quiet have
	// sent bytes that may or may not have reached the application, so they
	// fail (at most once) instead of going elsewhere.
	PipelineOn
	// PipelineOff holds a new stream's bytes until the destination's
	// answer: a stream on a path that died fails with nothing sent and is
	// retried elsewhere, so a gateway's death fails no new connection.
	PipelineOff
)

// DefaultPipelineMode is Config.SessionPipeline's default: off. Bytes sent
// before the destination's answer can neither be retried nor be known to
// have arrived when the path dies, the trade TLS 1.3 makes opt-in for early
// data (RFC 8446, section 8); failover without a failed new connection is
// what a federation is for, one round trip less is the caller's choice.
const DefaultPipelineMode = PipelineOff

// Log keys of sessions.
const logTarget = "target"

// sessionKey is the pool key of a candidate for the caller: sessions are
// not shared across callers, paths, addresses, services or clusters (the
// port is per stream).
func sessionKey(caller spiffeid.ID, c candidate) session.Key {
	name := c.sni
	if i := strings.IndexByte(name, '.'); i >= 0 {
		name = name[i+1:] // <service>.<namespace>.<cluster>.strait
	}
	return session.Key{Caller: caller, Path: c.path, Addr: c.addr, Name: name}
}

// openPooled opens a stream to c on a pooled session of the caller, or
// returns nil when there is none usable.
func (p *Proxy) openPooled(c candidate) (*session.Stream, error) {
	svid, err := p.cfg.SVIDs.GetX509SVID()
	if err != nil {
		return nil, wrapf("own SVID: %w", err)
	}
	return p.sessions.Open(sessionKey(svid.ID, c), c.sni, c.allowed), nil
}

// openFallback opens a stream to c on a pooled session of the caller that
// has room, or returns nil, after err failed the new session that the
// pool asked for to spread its streams (openPooled returned nil while a
// session was open): a stream there is what the pool would have given
// before it spread. A refusal for good, or a destination that is not who
// it must be, gets no fallback.
func (p *Proxy) openFallback(c candidate, err error) *session.Stream {
	if !retryable(err) || errors.Is(err, ErrUnexpectedServer) {
		return nil
	}
	svid, serr := p.cfg.SVIDs.GetX509SVID()
	if serr != nil {
		return nil
	}
	return p.sessions.OpenExisting(sessionKey(svid.ID, c), c.sni, c.allowed)
}

// startSession makes conn, a connection whose handshake negotiated
// sessions, a pooled session of the identity own presented, and opens the
// connection's stream on it.
func (p *Proxy) startSession(conn *tls.Conn, c candidate, own *x509.Certificate, setup time.Duration) (net.Conn, error) {
	id, err := spiffeid.FromURI(own.URIs[0])
	if len(own.URIs) != 1 || err != nil {
		_ = conn.Close()
		return nil, wrapf("own certificate names no SPIFFE ID")
	}
	p.sessionMetrics.ObserveSessionSetup(setup.Seconds())
	sc, err := session.NewClient(conn, p.sessions.Config(), p.sessionMetrics, setup, own.NotAfter)
	if err != nil {
		_ = conn.Close()
		return nil, wrapf("start session: %w", err)
	}
	st := p.sessions.Add(sessionKey(id, c), sc, c.sni)
	if st == nil {
		return nil, wrapf("start session: %w", session.ErrClosed)
	}
	return st, nil
}

// retireFailed retires the session of a stream that failed, so that the
// next attempt opens a new one (the ingress may then pick another
// endpoint). It reports whether dest was a stream of a session that had
// carried streams before this connection: the candidate stays eligible.
func retireFailed(dest net.Conn, reused bool) bool {
	st, ok := dest.(*session.Stream)
	if !ok {
		return false
	}
	st.Session().Retire()
	return reused
}

// serveSession serves the streams of an inbound session whose caller is
// peer, until it closes; it is closed when the caller's certificate
// expires (plus the grace period), with the streams it carries.
func (p *Proxy) serveSession(ctx context.Context, log *slog.Logger, conn *tls.Conn, peer spiffeid.ID, leaf *x509.Certificate) {
	defer p.closeAtExpiry(log, leaf, conn)()
	raw := conn.NetConn()
	p.sessionSrv.ServeConn(ctx, conn, func(sctx context.Context, target string) (net.Conn, func(session.Result), error) {
		slog := log.With(logTarget, target)
		if err := p.authorizeStream(peer, target); err != nil {
			return nil, nil, p.refuseStream(slog, err)
		}
		if p.draining.Load() {
			return nil, nil, &session.RefusedError{Code: straitv1.StreamCode_STREAM_CODE_DRAINING}
		}
		app, err := p.dialer.DialContext(sctx, "tcp", p.cfg.AppAddr)
		if err != nil {
			p.metrics.connections.WithLabelValues(dirInbound, resultAppError).Inc()
			slog.Warn("application unreachable; stream refused so the caller retries elsewhere", logAddr, p.cfg.AppAddr, logErr, err)
			return nil, nil, &session.RefusedError{Code: straitv1.StreamCode_STREAM_CODE_NO_ENDPOINT}
		}
		if !p.cfg.NoProxyHeader {
			host, _, _ := strings.Cut(target, ":")
			if err := p.writeProxyHeader(app, raw, peer.String(), host); err != nil {
				_ = app.Close()
				p.metrics.connections.WithLabelValues(dirInbound, resultAppError).Inc()
				slog.Warn("application connection failed", logAddr, p.cfg.AppAddr, logErr, err)
				return nil, nil, &session.RefusedError{Code: straitv1.StreamCode_STREAM_CODE_NO_ENDPOINT}
			}
		}
		p.metrics.active.WithLabelValues(dirInbound).Inc()
		start := time.Now()
		return app, func(r session.Result) {
			p.metrics.active.WithLabelValues(dirInbound).Dec()
			p.finish(slog, dirInbound, relayResult{Up: r.Up, Down: r.Down, UpErr: r.UpErr, DownErr: r.DownErr}, start, nil)
		}, nil
	})
}

// authorizeStream authorizes a stream of an inbound session: the name it
// asks for must be this service (checkSNI) on a port it serves, and the
// session's caller must be allowed to consume it now (authorizeCaller:
// the policy may have changed since the handshake).
func (p *Proxy) authorizeStream(peer spiffeid.ID, target string) error {
	host, _, _ := strings.Cut(target, ":")
	if err := p.checkSNI(host); err != nil {
		return err
	}
	name, _ := federation.ParseServiceName(host) // checked
	if !p.servesPort(uint32(name.Port)) {
		return wrapf("%w: port %d of %s", ErrMisrouted, name.Port, host)
	}
	return p.authorizeCaller(peer, nil)
}

// servesPort reports whether port is one of the endpoint's ports or of
// the service's export in this cluster.
func (p *Proxy) servesPort(port uint32) bool {
	has := func(ps []*straitv1.ServicePort) bool {
		return slices.ContainsFunc(ps, func(sp *straitv1.ServicePort) bool { return sp.GetPort() == port })
	}
	if has(p.cfg.Ports) {
		return true
	}
	key := federation.ServiceKey{Namespace: p.cfg.Namespace, Name: p.cfg.Service}
	return has(p.cfg.Snapshots.Snapshot().Export(p.cfg.Cluster, key).GetPorts())
}

// refuseStream counts and logs a refused stream and returns the refusal
// to answer it with.
func (p *Proxy) refuseStream(log *slog.Logger, err error) error {
	switch {
	case errors.Is(err, ErrUnauthorized):
		p.metrics.connections.WithLabelValues(dirInbound, resultUnauthorized).Inc()
		p.refused(log, "inbound stream refused", string(trust.ReasonUnauthorized), logErr, err)
		return &session.RefusedError{Code: straitv1.StreamCode_STREAM_CODE_UNAUTHORIZED}
	case errors.Is(err, ErrBadSNI):
		p.metrics.connections.WithLabelValues(dirInbound, resultMisrouted).Inc()
		p.refused(log, "inbound stream refused", refusedBadSNI, logErr, err)
		return &session.RefusedError{Code: straitv1.StreamCode_STREAM_CODE_BAD_REQUEST}
	case errors.Is(err, ErrMisrouted):
		p.metrics.connections.WithLabelValues(dirInbound, resultMisrouted).Inc()
		p.refused(log, "inbound stream refused", refusedMisrouted, logErr, err)
		return &session.RefusedError{Code: straitv1.StreamCode_STREAM_CODE_NOT_EXPORTED}
	}
	p.metrics.connections.WithLabelValues(dirInbound, resultUnauthorized).Inc()
	p.refused(log, "inbound stream refused", string(trust.ReasonUnauthorized), logErr, err)
	return &session.RefusedError{Code: straitv1.StreamCode_STREAM_CODE_UNAUTHORIZED}
}

// streamRefusal maps a session refusal to a RouteError.
func streamRefusal(err error, addr string) (*RouteError, bool) {
	var re *session.RefusedError
	if !errors.As(err, &re) {
		return nil, false
	}
	return &RouteError{Code: re.Code, Addr: addr, Err: err}, true
}

// sweepLoop sweeps the session pool every sessionSweepInterval until ctx
// ends (outbound connections sweep it too), so that sessions through a
// draining gateway close even while no new connection comes.
func (p *Proxy) sweepLoop(ctx context.Context) error {
	t := time.NewTicker(sessionSweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			p.sweepSessions(p.cfg.Snapshots.Snapshot())
		}
	}
}

// sessionSweepInterval is how often, at most, outbound connections sweep
// the session pool (sweepSessions).
const sessionSweepInterval = 100 * time.Millisecond

// sweepSessions retires, at most every sessionSweepInterval, the pooled
// sessions that should take no new stream although their candidate may
// still be tried: those through an egress gateway that drains or is gone
// (the candidates leave it out, and a retired session closes once idle,
// so that the gateway's drain ends), and those through gateways to a
// cluster one of whose gateways drains (it may be the ingress the session
// goes through; a new session goes to one that does not drain).
func (p *Proxy) sweepSessions(snap *federation.Snapshot) {
	now := time.Now().UnixNano()
	last := p.lastSweep.Load()
	if now-last < int64(sessionSweepInterval) || !p.lastSweep.CompareAndSwap(last, now) {
		return
	}
	egress := map[string]bool{}
	for _, gw := range snap.Gateways(p.cfg.Cluster) {
		if !gw.GetDraining() && gw.GetEgressAddress() != "" {
			egress[gw.GetEgressAddress()] = true
		}
	}
	// Since when each trust domain has had a draining gateway: sessions
	// opened later went to the gateways that do not drain.
	p.sweepMu.Lock()
	seen := map[spiffeid.TrustDomain]time.Time{}
	for _, cluster := range snap.Clusters() {
		if cluster == p.cfg.Cluster {
			continue
		}
		for _, gw := range snap.Gateways(cluster) {
			if td, err := spiffeid.TrustDomainFromString(gw.GetTrustDomain()); err == nil && gw.GetDraining() {
				since, ok := p.drainingSince[td]
				if !ok {
					since = time.Now()
				}
				seen[td] = since
			}
		}
	}
	p.drainingSince = seen
	p.sweepMu.Unlock()
	p.sessions.Sweep(func(key session.Key, c *session.Client) bool {
		if key.Path != pathGateway {
			return false
		}
		since, drains := seen[c.Peer().TrustDomain()]
		return !egress[key.Addr] || drains && c.Opened().Before(since)
	})
}
