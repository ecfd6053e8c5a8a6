package gateway

import (
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// Link statistics keep this many samples per remote gateway: RTT samples
// are taken every statsInterval (five minutes of them), stream setup times
// as streams open.
const (
	linkRTTSamples   = 300
	linkSetupSamples = 300
	linkRateWindow   = 10 // samples over which streams per second is computed
)

// LinkStatus is what a gateway measures of its link to one remote gateway,
// as /links serves it.
type LinkStatus struct {
	Cluster string `json:"cluster"`
	Gateway string `json:"gateway"`
	Address string `json:"address,omitempty"`
	// Alive: a QUIC connection to the remote gateway is established.
	// RTT, Loss and OpenStreams cover every pooled connection to it
	// (Config.ConnsPerRemoteGateway).
	Alive bool `json:"alive"`
	// RTT percentiles over the last RTT samples (one per second while
	// connected), in seconds; zero before the first sample.
	RTTP50 float64 `json:"rttP50Seconds"`
	RTTP95 float64 `json:"rttP95Seconds"`
	RTTP99 float64 `json:"rttP99Seconds"`
	// Loss is the fraction of packets the current connections declared
	// lost.
	Loss float64 `json:"loss"`
	// SetupP50 and SetupP99 are stream setup times (open, header, reply
	// and the destination's first byte), in seconds.
	SetupP50 float64 `json:"setupP50Seconds"`
	SetupP99 float64 `json:"setupP99Seconds"`
	// OpenStreams are the streams open now; StreamsPerSecond is the rate
	// of new streams over the last ten seconds; Streams counts them all.
	OpenStreams      int64   `json:"openStreams"`
	StreamsPerSecond float64 `json:"streamsPerSecond"`
	Streams          uint64  `json:"streams"`
	// LastError is the latest dial or stream failure, if any.
	LastError   string     `json:"lastError,omitempty"`
	LastErrorAt *time.Time `json:"lastErrorAt,omitempty"`
}

// Links is the /links document: a gateway and its links.
type Links struct {
	Cluster string       `json:"cluster"`
	Gateway string       `json:"gateway"`
	Links   []LinkStatus `json:"links"`
}

// linkMetrics are the per remote gateway metrics besides peerRTT, peerUp
// and peerFailures.
type linkMetrics struct {
	loss  *prometheus.GaugeVec     // peer_cluster, peer
	open  *prometheus.GaugeVec     // peer_cluster, peer
	setup *prometheus.HistogramVec // peer_cluster, peer
}

func newLinkMetrics(reg prometheus.Registerer) (*linkMetrics, error) {
	m := &linkMetrics{
		loss: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "strait_gateway_peer_loss_ratio",
			Help: "Fraction of the packets sent on the QUIC connections to a remote gateway that were declared lost.",
		}, []string{"peer_cluster", "peer"}),
		open: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "strait_gateway_peer_open_streams",
			Help: "Streams open on the QUIC connections to a remote gateway (all of them; strait_gateway_peer_connection_open_streams has each).",
		}, []string{"peer_cluster", "peer"}),
		setup: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "strait_gateway_peer_stream_setup_seconds",
			Help:    "Time to open a stream to a remote gateway: stream, header, reply and the destination's first byte.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}, []string{"peer_cluster", "peer"}),
	}
	for _, c := range []prometheus.Collector{m.loss, m.open, m.setup} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// links holds the statistics of every remote gateway the pool knows.
type links struct {
	m  *linkMetrics
	mu sync.Mutex
	by map[string]*link // cluster + "/" + id
}

type link struct {
	cluster, id, addr string
	alive             bool
	rtt               ring
	setup             ring
	loss              float64
	open              int64
	streams           uint64
	rate              []rateSample
	lastErr           string
	lastErrAt         time.Time
}

type rateSample struct {
	at    time.Time
	total uint64
}

func newLinks(m *linkMetrics) *links { return &links{m: m, by: map[string]*link{}} }

// get returns the link to cluster/id; the caller holds l.mu.
func (l *links) getLocked(cluster, id string) *link {
	key := cluster + "/" + id
	k, ok := l.by[key]
	if !ok {
		k = &link{cluster: cluster, id: id, rtt: newRing(linkRTTSamples), setup: newRing(linkSetupSamples)}
		l.by[key] = k
	}
	return k
}

// failed records a dial or stream failure.
func (l *links) failed(cluster, id string, err error, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := l.getLocked(cluster, id)
	k.lastErr, k.lastErrAt = err.Error(), now
}

// streamOpened records a stream's setup time.
func (l *links) streamOpened(cluster, id string, setup time.Duration) {
	l.m.setup.WithLabelValues(cluster, id).Observe(setup.Seconds())
	l.mu.Lock()
	defer l.mu.Unlock()
	k := l.getLocked(cluster, id)
	k.setup.add(setup.Seconds())
	k.streams++
}

// sample records the state of the connections to cluster/id that take
// new streams (none: the link is down): one RTT sample, the mean of their
// latest RTTs; the loss of them all; the streams open on them all.
func (l *links) sample(cluster, id, addr string, conns []*pconn, now time.Time) {
	var (
		rtt              time.Duration
		rtts             int
		sent, lost, open uint64
	)
	for _, c := range conns {
		st := c.ConnectionStats()
		if st.LatestRTT > 0 {
			rtt += st.LatestRTT
			rtts++
		}
		sent, lost = sent+st.PacketsSent, lost+st.PacketsLost
		open += uint64(max(c.streams.Load(), 0))
	}
	up := len(conns) > 0
	l.mu.Lock()
	defer l.mu.Unlock()
	k := l.getLocked(cluster, id)
	k.addr, k.alive = addr, up
	k.open = int64(open)
	if up {
		if rtts > 0 {
			k.rtt.add((rtt / time.Duration(rtts)).Seconds())
		}
		k.loss = 0
		if sent > 0 {
			k.loss = float64(lost) / float64(sent)
		}
	}
	k.rate = append(k.rate, rateSample{at: now, total: k.streams})
	if len(k.rate) > linkRateWindow {
		k.rate = slices.Delete(k.rate, 0, len(k.rate)-linkRateWindow)
	}
	l.m.loss.WithLabelValues(cluster, id).Set(k.loss)
	l.m.open.WithLabelValues(cluster, id).Set(float64(k.open))
}

// remove forgets a remote gateway that left the federation.
func (l *links) remove(cluster, id string) {
	l.mu.Lock()
	delete(l.by, cluster+"/"+id)
	l.mu.Unlock()
	l.m.loss.DeleteLabelValues(cluster, id)
	l.m.open.DeleteLabelValues(cluster, id)
	l.m.setup.DeleteLabelValues(cluster, id)
}

// status lists every link, ordered by cluster and gateway.
func (l *links) status() []LinkStatus {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]LinkStatus, 0, len(l.by))
	for _, k := range l.by {
		s := LinkStatus{
			Cluster: k.cluster, Gateway: k.id, Address: k.addr, Alive: k.alive,
			RTTP50: k.rtt.quantile(0.5), RTTP95: k.rtt.quantile(0.95), RTTP99: k.rtt.quantile(0.99),
			Loss: k.loss, SetupP50: k.setup.quantile(0.5), SetupP99: k.setup.quantile(0.99),
			OpenStreams: k.open, Streams: k.streams, LastError: k.lastErr,
		}
		if n := len(k.rate); n > 1 {
			first, last := k.rate[0], k.rate[n-1]
			if d := last.at.Sub(first.at).Seconds(); d > 0 {
				s.StreamsPerSecond = float64(last.total-first.total) / d
			}
		}
		if !k.lastErrAt.IsZero() {
			t := k.lastErrAt
			s.LastErrorAt = &t
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Cluster != out[j].Cluster {
			return out[i].Cluster < out[j].Cluster
		}
		return out[i].Gateway < out[j].Gateway
	})
	return out
}

// ring keeps the last samples of a measure.
type ring struct {
	buf  []float64
	next int
	full bool
}

func newRing(n int) ring { return ring{buf: make([]float64, n)} }

func (r *ring) add(v float64) {
	r.buf[r.next] = v
	r.next++
	if r.next == len(r.buf) {
		r.next, r.full = 0, true
	}
}

// quantile is the nearest-rank quantile q of the samples, 0 without any.
func (r *ring) quantile(q float64) float64 {
	n := r.next
	if r.full {
		n = len(r.buf)
	}
	if n == 0 {
		return 0
	}
	s := slices.Clone(r.buf[:n])
	slices.Sort(s)
	i := int(q*float64(n)+0.999999) - 1
	return s[max(0, min(i, n-1))]
}

// Links is the gateway's view of its links to remote gateways.
func (g *Gateway) Links() Links {
	return Links{Cluster: g.cfg.Cluster, Gateway: g.cfg.ID, Links: g.links.status()}
}

// noteLink records the outcome of opening a stream to cand: its setup
// time, or the failure (a refusal is the remote gateway's answer, not a
// failure of the link).
func (g *Gateway) noteLink(cand candidate, opened time.Time, code straitv1.StreamCode, err error) {
	id := cand.rec.GetId()
	switch {
	case err == nil && code == straitv1.StreamCode_STREAM_CODE_ACCEPTED:
		g.links.streamOpened(cand.cluster, id, time.Since(opened))
	case err != nil && code == straitv1.StreamCode_STREAM_CODE_INTERNAL:
		g.links.failed(cand.cluster, id, err, g.cfg.Now())
	}
}
