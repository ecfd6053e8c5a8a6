package gateway

import (
	"net/netip"
	"time"

	"github.com/quic-go/quic-go"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/strait-mesh/strait/federation"
)

// liveConfig holds the values the gateway reads from the federation's
// GatewayConfig, falling back to Config where a field is zero. It is
// immutable and swapped whole on every snapshot change.
type liveConfig struct {
	snap                                 *federation.Snapshot // computed from
	drain, idle, keepAlive, header, dial time.Duration
	maxStreams                           int64
	// endpointRanges are the ranges the ingress may dial; nil means the
	// default policy (see Config.EndpointCIDRs).
	endpointRanges []netip.Prefix
}

func (g *Gateway) computeLive(snap *federation.Snapshot) *liveConfig {
	gc := snap.Config(g.cfg.Cluster)
	return &liveConfig{
		snap:       snap,
		drain:      dur(gc.GetDrainTimeout(), g.cfg.DrainTimeout),
		idle:       dur(gc.GetIdleTimeout(), g.cfg.IdleTimeout),
		keepAlive:  dur(gc.GetKeepAlivePeriod(), g.cfg.KeepAlivePeriod),
		header:     dur(gc.GetHeaderTimeout(), g.cfg.HeaderTimeout),
		dial:       dur(gc.GetDialTimeout(), g.cfg.DialTimeout),
		maxStreams: int64(or(gc.GetMaxIncomingStreams(), g.cfg.MaxIncomingStreams)),

		endpointRanges: endpointRanges(gc.GetEndpointCidrs(), g.cfg.EndpointCIDRs, g.log),
	}
}

func dur(d *durationpb.Duration, def time.Duration) time.Duration {
	if v := d.AsDuration(); d != nil && v > 0 {
		return v
	}
	return def
}

// liveNow returns the live configuration of the newest snapshot, computing
// it once per snapshot.
func (g *Gateway) liveNow() *liveConfig {
	snap := g.cfg.Snapshots.Snapshot()
	if l := g.live.Load(); l != nil && l.snap == snap {
		return l
	}
	l := g.computeLive(snap)
	g.live.Store(l)
	return l
}

// quicConfig is the QUIC configuration of new connections, server side
// (ingress) or client side (pool). Neither side accepts unidirectional
// streams; the client accepts no streams at all.
func (l *liveConfig) quicConfig(server bool, handshake time.Duration) *quic.Config {
	c := &quic.Config{
		HandshakeIdleTimeout:  handshake,
		MaxIdleTimeout:        l.idle,
		KeepAlivePeriod:       l.keepAlive,
		MaxIncomingStreams:    l.maxStreams,
		MaxIncomingUniStreams: -1,
		Allow0RTT:             false,
		// A reset after relayed bytes still delivers them (RESET_STREAM_AT).
		EnableStreamResetPartialDelivery: true,
	}
	if !server {
		c.MaxIncomingStreams = -1
	}
	return c
}
