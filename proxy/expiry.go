package proxy

import (
	"crypto/x509"
	"log/slog"
	"net"
	"time"
)

// Log keys of an inbound connection's end of life.
const (
	logNotAfter = "not_after"
	logGrace    = "grace"
)

// connLimits returns the maximum age of an inbound connection (zero: none)
// and its expiry grace: the config's, else the cluster's GatewayConfig's,
// else the defaults.
func (p *Proxy) connLimits() (maxAge, grace time.Duration) {
	maxAge, grace = p.cfg.MaxConnectionAge, p.cfg.ExpiryGrace
	if maxAge > 0 && grace > 0 {
		return maxAge, grace
	}
	gc := p.cfg.Snapshots.Snapshot().Config(p.cfg.Cluster)
	if d := gc.GetMaxConnectionAge().AsDuration(); maxAge == 0 && gc.GetMaxConnectionAge() != nil && d > 0 {
		maxAge = d
	}
	if d := gc.GetExpiryGrace().AsDuration(); grace == 0 && gc.GetExpiryGrace() != nil && d > 0 {
		grace = d
	}
	if grace == 0 {
		grace = DefaultExpiryGrace
	}
	return maxAge, grace
}

// closeAtExpiry closes an inbound connection and its application side once
// the caller's certificate has expired (or the maximum connection age has
// passed) and the grace period is over: no connection outlives its peer's
// certificate, since short-lived SVIDs are the only revocation there is.
// The returned stop cancels it when the connection ends first.
func (p *Proxy) closeAtExpiry(log *slog.Logger, caller *x509.Certificate, conns ...net.Conn) (stop func() bool) {
	now := time.Now()
	maxAge, grace := p.connLimits()
	end := caller.NotAfter
	if maxAge > 0 && now.Add(maxAge).Before(end) {
		end = now.Add(maxAge)
	}
	t := time.AfterFunc(end.Add(grace).Sub(now), func() {
		log.Warn("closing inbound connection: the caller's certificate expired or the connection reached its maximum age",
			logNotAfter, caller.NotAfter, logGrace, grace)
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return t.Stop
}
