package proxy

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/strait-mesh/strait/internal/ratelog"
)

// metrics are the proxy's Prometheus metrics, all named strait_proxy_*.
type metrics struct {
	connections    *prometheus.CounterVec   // direction, result
	active         *prometheus.GaugeVec     // direction
	bytes          *prometheus.CounterVec   // direction
	connectSeconds *prometheus.HistogramVec // path
	refusals       *prometheus.CounterVec   // code
	attempts       *prometheus.CounterVec   // path, result
	appHealthy     prometheus.Gauge
	healthChecks   *prometheus.CounterVec // result
	// inboundRefusals counts the inbound connections refused, by reason
	// (see inboundRefusalReasons); inboundLog is the budget of their WARN
	// lines, which callers can cause at will.
	inboundRefusals *prometheus.CounterVec // reason
	inboundLog      *ratelog.Limiter
	// shed counts the outbound connections reset because their connect
	// budget ran out, by reason (see shedReasons).
	shed *prometheus.CounterVec // reason
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns, sub = "strait", "proxy"
	m := &metrics{
		connections: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "connections_total",
			Help: "Connections handled, by direction (inbound, outbound) and result."}, []string{"direction", "result"}),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "active_connections",
			Help: "Connections open now, by direction."}, []string{"direction"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "bytes_total",
			Help: "Bytes relayed, both ways, by connection direction."}, []string{"direction"}),
		connectSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "connect_seconds",
			Help:    "Time from accepting an outbound connection to a completed inner handshake, by path (local, gateway).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}, []string{"path"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "route_refusals_total",
			Help: "Outbound connections or attempts refused by a gateway or destination, by stream code."}, []string{"code"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "attempts_total",
			Help: "Outbound connection attempts on one candidate, by path and result (ok, error)."}, []string{"path", "result"}),
		appHealthy: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "app_healthy",
			Help: "1 while the application passes its health checks."}),
		healthChecks: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "health_checks_total",
			Help: "Active health checks of the application, by result (ok, fail)."}, []string{"result"}),
		inboundRefusals: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "inbound_refusals_total",
			Help: "Inbound connections refused, by reason: the caller's certificate or identity (a trust refusal reason such as unauthorized or expired), timeout, peer_closed, bad_sni (no or an unparsable service name), misrouted."}, []string{"reason"}),
		inboundLog: ratelog.New(ratelog.Config{}),
		shed: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "shed_connections_total",
			Help: "Outbound connections reset without reaching a destination because their connect budget (connect timeout, counted from the kernel's accept) ran out, by reason: stale (before any attempt: they waited in the accept queue or for the CPU), deadline (during or between attempts)."}, []string{"reason"}),
	}
	for _, r := range inboundRefusalReasons() {
		m.inboundRefusals.WithLabelValues(r)
	}
	for _, r := range shedReasons() {
		m.shed.WithLabelValues(r)
	}
	for _, c := range []prometheus.Collector{m.connections, m.active, m.bytes, m.connectSeconds, m.refusals, m.attempts, m.appHealthy, m.healthChecks, m.inboundRefusals, m.shed} {
		if err := reg.Register(c); err != nil {
			return nil, wrapf("register metrics: %w", err)
		}
	}
	return m, nil
}
