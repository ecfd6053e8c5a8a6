package gateway

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/strait-mesh/strait/internal/ratelog"
)

// Label values of the direction label.
const (
	dirIngress = "ingress"
	dirEgress  = "egress"
	// dirSent and dirReceived label bytes_total: bytes written into and
	// read from QUIC streams.
	dirSent     = "sent"
	dirReceived = "received"
	// resultFailed labels streams that failed without a reply code.
	resultFailed = "failed"
)

// metrics are the gateway's Prometheus series, all named strait_gateway_*.
// Every series also carries the constant labels cluster and gateway_id, so
// that several gateways can share one registry.
type metrics struct {
	streams          *prometheus.CounterVec   // direction, peer_cluster, result
	active           *prometheus.GaugeVec     // direction
	bytes            *prometheus.CounterVec   // direction
	setup            *prometheus.HistogramVec // direction
	peerRTT          *prometheus.GaugeVec     // peer_cluster, peer
	peerUp           *prometheus.GaugeVec     // peer_cluster, peer
	peerFailures     *prometheus.CounterVec   // peer_cluster, peer
	peerConns        *prometheus.GaugeVec     // peer_cluster, peer
	connStreams      *prometheus.GaugeVec     // peer_cluster, peer, conn
	refusals         *prometheus.CounterVec   // code
	handshakeFails   *prometheus.CounterVec   // reason
	handshakeRefused prometheus.Counter
	draining         prometheus.Gauge
	bytesSent        prometheus.Counter
	bytesReceived    prometheus.Counter

	// handshakeLog and streamLog are the budgets of the WARN lines of
	// refused handshakes and refused streams, which peers can cause at
	// will (separate, so that a flood of one does not hide the other).
	handshakeLog, streamLog *ratelog.Limiter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		streams: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strait_gateway_streams_total",
			Help: "Tunnel streams by direction, peer cluster and result (a StreamCode name or failed).",
		}, []string{"direction", "peer_cluster", "result"}),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "strait_gateway_active_streams",
			Help: "Tunnel streams being relayed, by direction.",
		}, []string{"direction"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strait_gateway_bytes_total",
			Help: "Bytes relayed, by direction: sent into or received from QUIC streams.",
		}, []string{"direction"}),
		setup: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "strait_gateway_stream_setup_seconds",
			Help:    "Time from a connection or stream arriving to the start of its relay.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}, []string{"direction"}),
		peerRTT: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "strait_gateway_peer_rtt_seconds",
			Help: "Smoothed RTT of the QUIC connection to a remote gateway.",
		}, []string{"peer_cluster", "peer"}),
		peerUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "strait_gateway_peer_up",
			Help: "1 while the QUIC connection to a remote gateway is established.",
		}, []string{"peer_cluster", "peer"}),
		peerFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strait_gateway_peer_failures_total",
			Help: "Failed dials to a remote gateway and connections to it found dead.",
		}, []string{"peer_cluster", "peer"}),
		peerConns: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "strait_gateway_peer_connections",
			Help: "QUIC connections to a remote gateway that take new streams (at most the gateway's ConnsPerRemoteGateway).",
		}, []string{"peer_cluster", "peer"}),
		connStreams: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "strait_gateway_peer_connection_open_streams",
			Help: "Streams open on each pooled QUIC connection to a remote gateway, by connection slot (conn, 0 to ConnsPerRemoteGateway-1; 0 while the slot is empty).",
		}, []string{"peer_cluster", "peer", "conn"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strait_gateway_egress_refusals_total",
			Help: "Connections the egress refused, by code: a StreamCode name (answered with a TLS alert) or, reset at once, not_tls, malformed_hello, no_sni, hello_timeout or closed_before_hello (no proxy's ClientHello naming a service: a client without a sidecar).",
		}, []string{"code"}),
		handshakeFails: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strait_gateway_ingress_handshake_failures_total",
			Help: "QUIC connection attempts to the ingress that were refused or whose handshake failed, by reason (a trust refusal reason such as unauthorized or expired, too_many_handshakes, timeout, peer_closed, connection_limit).",
		}, []string{"reason"}),
		handshakeRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strait_gateway_ingress_handshakes_refused_total",
			Help: "QUIC connection attempts refused before the handshake because too many were in progress.",
		}),
		draining: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "strait_gateway_draining",
			Help: "1 while the gateway drains.",
		}),
	}
	m.handshakeLog, m.streamLog = ratelog.New(ratelog.Config{}), ratelog.New(ratelog.Config{})
	for _, r := range handshakeFailureReasons() {
		m.handshakeFails.WithLabelValues(r)
	}
	for _, r := range egressResetReasons() {
		m.refusals.WithLabelValues(r)
	}
	m.bytesSent = m.bytes.WithLabelValues(dirSent)
	m.bytesReceived = m.bytes.WithLabelValues(dirReceived)
	for _, c := range []prometheus.Collector{m.streams, m.active, m.bytes, m.setup, m.peerRTT, m.peerUp, m.peerFailures, m.peerConns, m.connStreams, m.refusals, m.handshakeFails, m.handshakeRefused, m.draining} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("gateway: register metrics: %w", err)
		}
	}
	return m, nil
}
