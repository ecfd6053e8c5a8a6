package trust

import (
	"crypto/tls"
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric label names.
const (
	labelSPIFFEID    = "spiffe_id"
	labelReason      = "reason"
	labelTrustDomain = "trust_domain"
	labelResult      = "result"
	labelLayer       = "layer"
	labelGroup       = "group"
	labelCipher      = "cipher"
)

// TLSLayer names the layer of a handshake in strait_tls_handshakes_total.
type TLSLayer string

// The layers of Strait's data path.
const (
	// LayerTunnel is the QUIC connection between two gateways.
	LayerTunnel TLSLayer = "tunnel"
	// LayerInner is the mTLS session between two proxies, end to end
	// through the gateways.
	LayerInner TLSLayer = "inner"
)

// Metrics are the trust package's Prometheus metrics. Create one per
// registry with NewMetrics and share it between components; a nil *Metrics
// records nothing.
type Metrics struct {
	svidExpiry        *prometheus.GaugeVec
	svidRotations     *prometheus.CounterVec
	handshakeFailures *prometheus.CounterVec
	bundleUpdates     *prometheus.CounterVec
	bundleSequence    *prometheus.GaugeVec
	tlsHandshakes     *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them on reg:
//
//	strait_trust_svid_expiry_timestamp_seconds{spiffe_id}  NotAfter of the current SVID
//	strait_trust_svid_rotations_total{spiffe_id}           SVIDs obtained
//	strait_trust_handshake_failures_total{reason}          refused handshakes by HandshakeFailureReason
//	strait_trust_bundle_updates_total{trust_domain,result} bundle records applied or rejected
//	strait_trust_bundle_sequence{trust_domain}             sequence of the bundle in use
//	strait_tls_handshakes_total{layer,group,cipher}        completed handshakes by key exchange and cipher suite
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		svidExpiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "strait_trust_svid_expiry_timestamp_seconds",
			Help: "Expiry (NotAfter, Unix seconds) of the X.509 SVID a source currently serves.",
		}, []string{labelSPIFFEID}),
		svidRotations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strait_trust_svid_rotations_total",
			Help: "X.509 SVIDs a source obtained (the first one and each rotation).",
		}, []string{labelSPIFFEID}),
		handshakeFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strait_trust_handshake_failures_total",
			Help: "Peer certificates refused during TLS handshakes, by reason.",
		}, []string{labelReason}),
		bundleUpdates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strait_trust_bundle_updates_total",
			Help: "Trust bundle records offered to a bundle store, by result (applied, unchanged, stale, invalid, ignored).",
		}, []string{labelTrustDomain, labelResult}),
		bundleSequence: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "strait_trust_bundle_sequence",
			Help: "Sequence number of the trust bundle in use, per trust domain.",
		}, []string{labelTrustDomain}),
		tlsHandshakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strait_tls_handshakes_total",
			Help: "Completed TLS handshakes, by layer (tunnel: gateway to gateway over QUIC; inner: proxy to proxy), key exchange group (e.g. X25519MLKEM768) and cipher suite.",
		}, []string{labelLayer, labelGroup, labelCipher}),
	}
	if reg == nil {
		return nil, errors.New("trust: metrics need a registerer")
	}
	for _, c := range []prometheus.Collector{m.svidExpiry, m.svidRotations, m.handshakeFailures, m.bundleUpdates, m.bundleSequence, m.tlsHandshakes} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("trust: register metrics: %w", err)
		}
	}
	for _, r := range HandshakeFailureReasons() {
		m.handshakeFailures.WithLabelValues(string(r))
	}
	return m, nil
}

func (m *Metrics) observeSVID(id string, notAfterUnix float64) {
	if m == nil {
		return
	}
	m.svidExpiry.WithLabelValues(id).Set(notAfterUnix)
	m.svidRotations.WithLabelValues(id).Inc()
}

func (m *Metrics) observeHandshakeFailure(r HandshakeFailureReason) {
	if m == nil {
		return
	}
	m.handshakeFailures.WithLabelValues(string(r)).Inc()
}

func (m *Metrics) observeBundle(td, result string, seq uint64, applied bool) {
	if m == nil {
		return
	}
	m.bundleUpdates.WithLabelValues(td, result).Inc()
	if applied {
		m.bundleSequence.WithLabelValues(td).Set(float64(seq))
	}
}

// ObserveHandshakeFailure counts a refused handshake under the reason
// ClassifyHandshakeError gives err. Connection code that does not use the
// configs of this package calls it; the configs count their own refusals.
func (m *Metrics) ObserveHandshakeFailure(err error) {
	m.observeHandshakeFailure(ClassifyHandshakeError(err))
}

// ObserveTLSHandshake counts a completed handshake of layer under the key
// exchange group and cipher suite it negotiated. The side that accepts the
// connection calls it, so that each connection is counted once.
func (m *Metrics) ObserveTLSHandshake(layer TLSLayer, state tls.ConnectionState) {
	if m == nil {
		return
	}
	m.tlsHandshakes.WithLabelValues(string(layer), KeyExchangeName(state.CurveID), tls.CipherSuiteName(state.CipherSuite)).Inc()
}

// KeyExchangeName names a key exchange group as crypto/tls does
// ("X25519MLKEM768"), or "none" for a handshake without one.
func KeyExchangeName(id tls.CurveID) string {
	if id == 0 {
		return "none"
	}
	return id.String()
}
