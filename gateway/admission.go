package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go"
	"golang.org/x/time/rate"
)

// errSourceLimit refuses a connection attempt from a source address that
// has MaxHandshakesPerSource handshakes in progress.
var errSourceLimit = errors.New("gateway: too many handshakes in progress from one source address")

// handshakeSourceLimit is the reason of
// strait_gateway_ingress_handshake_failures_total for an attempt refused
// because its source address had MaxHandshakesPerSource in progress.
const handshakeSourceLimit = "source_limit"

// admission bounds what an unfinished handshake may cost the ingress. quic-go
// calls verify (Transport.VerifySourceAddress) for every Initial without a
// valid token, then admit (Transport.ConnContext) for every attempt it is
// about to create a connection for, both from its one packet-handling
// goroutine. Under pressure (many handshakes in progress in all, or from the
// source, or a high rate of attempts) the ingress answers with a stateless
// Retry: an attempt that does not come back with the token (a silent or
// spoofed one) then holds nothing. A validated source address gets at most
// MaxHandshakesPerSource handshakes in progress.
type admission struct {
	retryAbove int // handshakes in progress; <= 0 never
	perSource  int
	limiter    *rate.Limiter // nil: always Retry

	mu       sync.Mutex
	bySource map[netip.Addr]int // handshakes in progress by source IP

	retries prometheus.Counter
}

func newAdmission(cfg Config, reg prometheus.Registerer) (*admission, error) {
	a := &admission{
		retryAbove: cfg.RetryAboveHandshakes,
		perSource:  cfg.MaxHandshakesPerSource,
		bySource:   map[netip.Addr]int{},
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strait_gateway_ingress_retries_total",
			Help: "QUIC connection attempts answered with a Retry to validate their source address.",
		}),
	}
	if cfg.RetryAboveRate >= 0 {
		a.limiter = rate.NewLimiter(rate.Limit(cfg.RetryAboveRate), int(cfg.RetryAboveRate)+1)
	}
	if err := reg.Register(a.retries); err != nil {
		return nil, fmt.Errorf("gateway: register metrics: %w", err)
	}
	return a, nil
}

// sourceIP is the IP of a UDP source address.
func sourceIP(a net.Addr) netip.Addr {
	if u, ok := a.(*net.UDPAddr); ok {
		return u.AddrPort().Addr().Unmap()
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

func (a *admission) inProgress(src netip.Addr) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.bySource[src]
}

// verifySourceAddress reports whether an attempt from addr must first
// validate its address with a Retry: when Retry is always on, when
// RetryAboveHandshakes handshakes are in progress, when its source has
// MaxHandshakesPerSource in progress (so that a spoofed address cannot use
// up its owner's share), or above RetryAboveRate attempts per second.
func (g *Gateway) verifySourceAddress(addr net.Addr) bool {
	a := g.admission
	retry := a.limiter == nil ||
		(a.retryAbove > 0 && g.handshakes.Load() >= int64(a.retryAbove)) ||
		a.inProgress(sourceIP(addr)) >= a.perSource ||
		!a.limiter.Allow()
	if retry {
		a.retries.Inc()
	}
	return retry
}

// sourceSlot is the share of its source address an attempt holds until its
// handshake completes or fails.
type sourceSlot struct {
	once    sync.Once
	release func()
}

type sourceSlotKey struct{}

// admitAttempt is the ingress's Transport.ConnContext: it takes a slot of
// the attempt's source address, then admits it to the handshake with
// connContext (which bounds the handshakes in progress in all).
func (g *Gateway) admitAttempt(ctx context.Context, info *quic.ClientInfo) (context.Context, error) {
	a := g.admission
	src := sourceIP(info.RemoteAddr)
	a.mu.Lock()
	if a.bySource[src] >= a.perSource {
		a.mu.Unlock()
		g.m.handshakeRefused.Inc()
		g.m.handshakeFails.WithLabelValues(handshakeSourceLimit).Inc()
		g.m.handshakeLog.Warn(g.log, "gateway: ingress handshake refused", logPeerAddr, info.RemoteAddr.String(),
			logRefusalReason, handshakeSourceLimit)
		return nil, errSourceLimit
	}
	a.bySource[src]++
	a.mu.Unlock()
	slot := &sourceSlot{}
	slot.release = func() {
		slot.once.Do(func() {
			a.mu.Lock()
			defer a.mu.Unlock()
			if a.bySource[src]--; a.bySource[src] <= 0 {
				delete(a.bySource, src)
			}
		})
	}
	ctx, err := g.connContext(ctx, info)
	if err != nil {
		slot.release()
		return nil, err
	}
	context.AfterFunc(ctx, slot.release)
	return context.WithValue(ctx, sourceSlotKey{}, slot), nil
}

// handshakeDone gives back the source slot of an accepted connection.
func handshakeDone(conn *quic.Conn) {
	if slot, ok := conn.Context().Value(sourceSlotKey{}).(*sourceSlot); ok {
		slot.release()
	}
}
