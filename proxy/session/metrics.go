package session

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Sides of a session, the label of strait_proxy_sessions_open.
const (
	SideClient = "client"
	SideServer = "server"
)

// Metrics are the session metrics, all named strait_proxy_*. A nil
// *Metrics counts nothing.
type Metrics struct {
	open          *prometheus.GaugeVec // side
	streams       *prometheus.HistogramVec
	sessionSetup  prometheus.Histogram
	streamSetup   prometheus.Histogram
	streamsActive *prometheus.GaugeVec   // side
	abandoned     *prometheus.CounterVec // reason
}

// Reasons of strait_proxy_session_streams_abandoned_total.
const (
	// ReasonStalled: a held stream had no answer within the session's
	// stall time (Client.Stalled); nothing of the caller's was sent.
	ReasonStalled = "stalled"
)

// NewMetrics registers the session metrics with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	const ns, sub = "strait", "proxy"
	m := &Metrics{
		open: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "sessions_open",
			Help: "Pooled inner mTLS sessions open now, by side (client: this proxy's callers; server: its inbound)."}, []string{"side"}),
		streamsActive: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "session_streams_active",
			Help: "Streams open now inside sessions, by side."}, []string{"side"}),
		streams: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "session_streams",
			Help:    "Streams a session carried in its life, observed when it closes, by side.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 10)}, []string{"side"}),
		abandoned: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "session_streams_abandoned_total",
			Help: "Client streams given up before their answer with nothing of the caller's sent (so retryable elsewhere), by reason."}, []string{"reason"}),
		sessionSetup: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "session_setup_seconds",
			Help:    "Time to open a client session: dial and inner mTLS handshake.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		streamSetup: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "stream_setup_seconds",
			Help:    "Time from opening a stream on a client session to the destination's answer (accepted or refused).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
	}
	for _, side := range []string{SideClient, SideServer} {
		m.open.WithLabelValues(side)
		m.streamsActive.WithLabelValues(side)
	}
	m.abandoned.WithLabelValues(ReasonStalled)
	for _, c := range []prometheus.Collector{m.open, m.streamsActive, m.streams, m.sessionSetup, m.streamSetup, m.abandoned} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("session: register metrics: %w", err)
		}
	}
	return m, nil
}

func (m *Metrics) sessionOpened(side string) {
	if m != nil {
		m.open.WithLabelValues(side).Inc()
	}
}

func (m *Metrics) sessionClosed(side string, streams int64) {
	if m != nil {
		m.open.WithLabelValues(side).Dec()
		m.streams.WithLabelValues(side).Observe(float64(streams))
	}
}

func (m *Metrics) streamOpened(side string) {
	if m != nil {
		m.streamsActive.WithLabelValues(side).Inc()
	}
}

func (m *Metrics) streamClosed(side string) {
	if m != nil {
		m.streamsActive.WithLabelValues(side).Dec()
	}
}

// ObserveSessionSetup records the time a client session took to open.
func (m *Metrics) ObserveSessionSetup(seconds float64) {
	if m != nil {
		m.sessionSetup.Observe(seconds)
	}
}

func (m *Metrics) observeStreamSetup(seconds float64) {
	if m != nil {
		m.streamSetup.Observe(seconds)
	}
}

func (m *Metrics) streamAbandoned() {
	if m != nil {
		m.abandoned.WithLabelValues(ReasonStalled).Inc()
	}
}
