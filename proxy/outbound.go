package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"slices"
	"time"

	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
	"github.com/strait-mesh/strait/proxy/session"
	"github.com/strait-mesh/strait/trust"
)

// serveOutbound connects one application connection to its upstream and
// relays.
func (p *Proxy) serveOutbound(ctx context.Context, up Upstream, app net.Conn) {
	m := p.metrics
	m.active.WithLabelValues(dirOutbound).Inc()
	defer m.active.WithLabelValues(dirOutbound).Dec()
	log := p.log.With(logDirection, dirOutbound, logUpstream, up.Name(), logRemote, app.RemoteAddr().String())

	start := time.Now()
	// The attempts run under the connection's connect budget, counted
	// from the kernel's accept: none starts or goes on past it.
	accepted := acceptedAt(app, start)
	budget, cancel := p.connectBudget(ctx, accepted)
	defer cancel()
	skip := map[string]bool{}
	var unsent []byte
	for round := 0; ; round++ {
		if budgetSpent(ctx, budget) {
			reason := shedDeadline
			if round == 0 {
				reason = shedStale // no attempt made
			}
			p.shed(log, app, reason, accepted)
			return
		}
		conn, cand, err := p.connectSkipping(budget, up, log, skip)
		if err != nil {
			if budgetSpent(ctx, budget) {
				p.shed(log, app, shedDeadline, accepted)
				return
			}
			abort(app)
			p.countFailure(log, err)
			return
		}
		m.connectSeconds.WithLabelValues(cand.path).Observe(time.Since(start).Seconds())
		unwatch := budgetWatch(budget, conn)
		dest := &firstByteConn{Conn: conn}
		var res relayResult
		retry := false
		if len(unsent) > 0 {
			_, _ = dest.Write(unsent) // a failure shows in dest, and in the relay
			res.Up = int64(len(unsent))
		}
		if dest.unexchanged() {
			retry = true
		} else {
			var r relayResult
			r, retry = p.relayOutbound(app, dest)
			r.Up += res.Up
			res = r
		}
		unwatch()
		cand.release()
		if retry {
			// The destination failed after the inner handshake (or its
			// session stream failed before its answer) but before any
			// byte crossed it either way: no byte of the request
			// reached it, so the connection goes to the next candidate
			// (or, on a session that carried streams before, to a new
			// session to the same candidate) with what the application
			// sent so far.
			_ = dest.Conn.Close()
			if re, ok := destinationRefusal(dest.err, cand.addr); ok && !re.Retryable() {
				abort(app)
				p.finish(log.With(logAddr, cand.addr, logPath, cand.path), dirOutbound, res, start, re)
				return
			}
			p.metrics.attempts.WithLabelValues(cand.path, "error").Inc()
			log.Debug("attempt failed", logAddr, cand.addr, logPath, cand.path, logErr, &unexchangedError{dest.err})
			if !retireFailed(dest.Conn, cand.reused) {
				skip[cand.key()] = true
			}
			unsent = dest.unsent
			continue
		}
		log = log.With(logAddr, cand.addr, logPath, cand.path, logLocal, conn.LocalAddr().String())
		var refusal *RouteError
		if re, ok := destinationRefusal(res.DownErr, cand.addr); ok && res.Down == 0 {
			refusal = re // relay has reset the application's connection
		}
		p.finish(log, dirOutbound, res, start, refusal)
		return
	}
}

// connected is a candidate the connection went to.
type connected struct {
	candidate
	release func()
	// reused is set when the connection is a stream of a session that
	// was open before (not one this connection opened).
	reused bool
}

// connect tries the candidates in order until one completes the inner
// handshake. An attempt that fails is retried on the next candidate unless
// it was refused for good (NOT_EXPORTED, UNAUTHORIZED).
func (p *Proxy) connect(ctx context.Context, up Upstream, log *slog.Logger) (net.Conn, connected, error) {
	return p.connectSkipping(ctx, up, log, nil)
}

// connectSkipping is connect without the candidates whose key is in skip
// (they failed this connection already).
func (p *Proxy) connectSkipping(ctx context.Context, up Upstream, log *slog.Logger, skip map[string]bool) (net.Conn, connected, error) {
	own, err := p.trustDomain()
	if err != nil {
		return nil, connected{}, err
	}
	snap := p.cfg.Snapshots.Snapshot()
	if p.sessions != nil {
		p.sweepSessions(snap)
	}
	cands := slices.DeleteFunc(p.candidates(snap, up, own), func(c candidate) bool { return skip[c.key()] })
	if len(cands) == 0 {
		return nil, connected{}, &RouteError{Code: straitv1.StreamCode_STREAM_CODE_NO_ENDPOINT, Err: ErrNoCandidate}
	}
	var errs []error
	for i, c := range cands {
		release := p.load.acquire(c.addr)
		conn, reused, err := p.attemptOrStream(ctx, c)
		if err == nil {
			p.metrics.attempts.WithLabelValues(c.path, resultOK).Inc()
			return conn, connected{candidate: c, release: release, reused: reused}, nil
		}
		release()
		var re *RouteError
		switch {
		case errors.Is(err, ErrUnexpectedServer):
			// The destination is not who the candidate must be: the
			// handshake stopped at its certificate, before any byte of
			// the application's was written. The next candidate may be
			// the genuine one.
			p.refuseServer(c.addr, c.path, err)
		case errors.As(err, &re):
			p.metrics.attempts.WithLabelValues(c.path, "error").Inc()
			p.metrics.refusals.WithLabelValues(re.Code.String()).Inc()
		default:
			p.metrics.attempts.WithLabelValues(c.path, "error").Inc()
		}
		log.Debug("attempt failed", logAttempt, i+1, logAddr, c.addr, logPath, c.path, logErr, err)
		errs = append(errs, err)
		if !retryable(err) || ctx.Err() != nil {
			break
		}
	}
	return nil, connected{}, lastError(errs)
}

// lastError returns the decisive error of failed attempts: the last
// refusal if there was one (it names a code), else the last error.
func lastError(errs []error) error {
	for i := len(errs) - 1; i >= 0; i-- {
		var re *RouteError
		if errors.As(errs[i], &re) {
			return errs[i]
		}
	}
	return wrapf("all %d candidates failed: %w", len(errs), errors.Join(errs...))
}

// attemptOrStream connects to one candidate: with sessions, a stream on a
// pooled session of the caller to it (reused), or else a new inner
// handshake, which becomes a session when the destination negotiates one
// (and the connection its first stream), or stays the connection itself;
// a handshake that fails falls back to a pooled session with room
// (openFallback: the pool asked for a new one only to spread streams).
func (p *Proxy) attemptOrStream(ctx context.Context, c candidate) (conn net.Conn, reused bool, err error) {
	if p.sessions != nil {
		st, err := p.openPooled(c)
		if err != nil {
			return nil, false, err
		}
		if st != nil {
			return st, true, nil
		}
	}
	start := time.Now()
	tc, own, err := p.attempt(ctx, c)
	if err != nil {
		if p.sessions != nil {
			if st := p.openFallback(c, err); st != nil {
				return st, true, nil
			}
		}
		return nil, false, err
	}
	if p.sessions != nil && tc.ConnectionState().NegotiatedProtocol == session.ALPN {
		conn, err := p.startSession(tc, c, own, time.Since(start))
		return conn, false, err
	}
	return tc, false, nil
}

// attempt dials one candidate and completes the inner handshake, detecting
// a gateway's refusal in place of the ServerHello. It returns the
// certificate it presented. With sessions, it offers them (ALPN).
func (p *Proxy) attempt(ctx context.Context, c candidate) (*tls.Conn, *x509.Certificate, error) {
	raw, err := p.dialer.DialContext(ctx, "tcp", c.addr)
	if err != nil {
		return nil, nil, err
	}
	cfg, err := trust.ClientTLSConfig(trust.TLSConfig{SVID: p.cfg.SVIDs, Bundles: p.cfg.Bundles, Authorizer: trust.AuthorizeServer(c.allowed), Metrics: p.cfg.TrustMetrics})
	if err != nil {
		_ = raw.Close()
		return nil, nil, wrapf("outbound TLS: %w", err)
	}
	cfg.ServerName = c.sni
	var own *x509.Certificate
	if p.sessions != nil {
		cfg.NextProtos = []string{session.ALPN}
		get := cfg.GetClientCertificate
		cfg.GetClientCertificate = func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
			cert, err := get(cri)
			if err == nil && cert != nil && len(cert.Certificate) > 0 {
				own = cert.Leaf
				if own == nil {
					own, _ = x509.ParseCertificate(cert.Certificate[0])
				}
			}
			return cert, err
		}
	}
	conn := tls.Client(&refusalConn{Conn: raw}, cfg)
	if err := p.handshake(ctx, conn); err != nil {
		_ = raw.Close()
		var re *RouteError
		if errors.As(err, &re) {
			return nil, nil, re
		}
		if re, ok := destinationRefusal(err, c.addr); ok {
			return nil, nil, re
		}
		return nil, nil, wrapf("handshake with %s: %w", c.addr, err)
	}
	if p.sessions != nil && conn.ConnectionState().NegotiatedProtocol == session.ALPN && own == nil {
		_ = conn.Close()
		return nil, nil, wrapf("handshake with %s: own certificate unknown", c.addr)
	}
	return conn, own, nil
}

// countFailure logs and counts an outbound connection that never reached
// its destination.
func (p *Proxy) countFailure(log *slog.Logger, err error) {
	var re *RouteError
	if errors.As(err, &re) {
		p.metrics.connections.WithLabelValues(dirOutbound, resultRefused).Inc()
		if errors.Is(err, ErrNoCandidate) {
			p.metrics.refusals.WithLabelValues(re.Code.String()).Inc()
		}
		log.Warn("connection refused", logCode, re.Code.String(), logErr, err)
		return
	}
	p.metrics.connections.WithLabelValues(dirOutbound, resultNoRoute).Inc()
	log.Warn("no candidate reachable", logErr, err)
}

// finish logs and counts a relayed connection. refusal is set when the
// destination refused the caller after the handshake (TLS 1.3 clients learn
// of a rejected certificate only then).
func (p *Proxy) finish(log *slog.Logger, dir string, res relayResult, start time.Time, refusal *RouteError) {
	p.metrics.bytes.WithLabelValues(dir).Add(float64(res.Up + res.Down))
	if refusal != nil {
		p.metrics.connections.WithLabelValues(dir, resultRefused).Inc()
		p.metrics.refusals.WithLabelValues(refusal.Code.String()).Inc()
		log.Warn("connection refused", logCode, refusal.Code.String(), logErr, refusal)
		return
	}
	p.metrics.connections.WithLabelValues(dir, resultOK).Inc()
	log.Debug("connection closed", logBytesOut, res.Up, logBytesIn, res.Down, logDuration, time.Since(start),
		logUpErr, res.UpErr, logDownErr, res.DownErr)
}

// refuseServer counts and logs (WARN, rate limited) a candidate that was
// not used because its server's identity is not the one it must be: a
// local endpoint record naming an identity the export does not allow, or a
// destination whose certificate named another identity than expected.
func (p *Proxy) refuseServer(addr, path string, err error) {
	p.metrics.attempts.WithLabelValues(path, resultUnexpectedServer).Inc()
	p.refusalLog.Warn(p.log, "destination refused: unexpected server identity", logDirection, dirOutbound, logAddr, addr, logPath, path,
		logReason, resultUnexpectedServer, logErr, err)
}
