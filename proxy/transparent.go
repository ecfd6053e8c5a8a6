package proxy

import (
	"context"
	"net"
	"time"

	"github.com/strait-mesh/strait/proxy/capture"
)

// serveTransparent handles a connection the capture rules redirected: to a
// service's virtual IP it is routed like an upstream connection; anything
// else is relayed to where it was going.
func (p *Proxy) serveTransparent(ctx context.Context, c net.Conn) {
	dst, err := capture.OriginalDst(c)
	if err != nil {
		_ = c.Close()
		p.metrics.connections.WithLabelValues(dirPassthrough, resultNoOriginalDst).Inc()
		p.log.Debug("captured connection without an original destination", logRemote, c.RemoteAddr().String(), logErr, err)
		return
	}
	if res := p.cfg.Transparent.Services; res != nil {
		if svc, ok := res.ServiceForAddr(dst.Addr()); ok {
			p.serveOutbound(ctx, Upstream{Service: svc, Port: dst.Port(), ListenAddr: dst.String()}, c)
			return
		}
	}
	p.passthrough(ctx, c, dst.String())
}

// passthrough relays a captured connection, unchanged, to its original
// destination.
func (p *Proxy) passthrough(ctx context.Context, c net.Conn, dst string) {
	m := p.metrics
	m.active.WithLabelValues(dirPassthrough).Inc()
	defer m.active.WithLabelValues(dirPassthrough).Dec()
	log := p.log.With(logDirection, dirPassthrough, logRemote, c.RemoteAddr().String(), logAddr, dst)
	up, err := p.dialer.DialContext(ctx, "tcp", dst)
	if err != nil {
		_ = c.Close()
		m.connections.WithLabelValues(dirPassthrough, resultNoRoute).Inc()
		log.Debug("pass-through dial failed", logErr, err)
		return
	}
	start := time.Now()
	res := p.relay(c, up)
	p.finish(log, dirPassthrough, res, start, nil)
}
