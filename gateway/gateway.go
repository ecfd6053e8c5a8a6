package gateway

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/strait-mesh/strait/gateway/relay"
)

// Gateway is one east-west gateway of a cluster. Create it with New, start
// it with Run, stop it by canceling Run's context or with Drain.
type Gateway struct {
	cfg      Config
	log      *slog.Logger
	m        *metrics
	gatherer prometheus.Gatherer
	relay    *relay.Relay
	pool     *pool
	links    *links // measures of the links to remote gateways
	live     atomic.Pointer[liveConfig]
	active   *tracker // streams in both directions
	peers    *tracker // accepted ingress connections

	handshakes atomic.Int64 // incoming handshakes in progress
	admission  *admission   // Retry and per-source bounds of handshakes
	dialGuard  *dialGuard   // which endpoint addresses the ingress dials

	started  atomic.Bool
	draining atomic.Bool
	ready    chan struct{} // closed once listeners are bound and registered
	drainReq chan struct{} // closed when Drain is called
	drainCh  chan struct{} // closed when the gateway starts draining
	stopped  chan struct{} // closed when Run has released everything
	drainMu  sync.Once
	wg       sync.WaitGroup // every goroutine the gateway starts

	// Set before ready is closed, read-only afterwards.
	udp         *net.UDPConn
	transport   *quic.Transport
	listener    *quic.Listener
	egressLn    *net.TCPListener
	adminLn     net.Listener
	admin       *http.Server
	ingressAddr net.Addr
	recordKey   string

	connsMu sync.Mutex
	conns   map[*quic.Conn]struct{} // accepted ingress connections
	perPeer map[spiffeid.ID]int     // accepted ingress connections by peer
}

// New validates cfg and returns a Gateway that is not yet running.
func New(cfg Config) (*Gateway, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("gateway: invalid config: %w", err)
	}
	g := &Gateway{
		cfg:      cfg,
		log:      cfg.Logger.With(logCluster, cfg.Cluster, logGatewayID, cfg.ID),
		relay:    relay.New(relay.Config{}),
		active:   newTracker(),
		peers:    newTracker(),
		ready:    make(chan struct{}),
		drainReq: make(chan struct{}),
		drainCh:  make(chan struct{}),
		stopped:  make(chan struct{}),
		conns:    map[*quic.Conn]struct{}{},
		perPeer:  map[spiffeid.ID]int{},
	}
	reg := cfg.Metrics
	if reg == nil {
		private := prometheus.NewRegistry()
		reg, g.gatherer = private, private
	}
	if cfg.Gatherer != nil {
		g.gatherer = cfg.Gatherer
	} else if gath, ok := reg.(prometheus.Gatherer); ok && g.gatherer == nil {
		g.gatherer = gath
	}
	if g.gatherer == nil {
		g.gatherer = prometheus.NewRegistry()
	}
	labeled := prometheus.WrapRegistererWith(prometheus.Labels{"cluster": cfg.Cluster, "gateway_id": cfg.ID}, reg)
	m, err := newMetrics(labeled)
	if err != nil {
		return nil, err
	}
	g.m = m
	if g.admission, err = newAdmission(cfg, labeled); err != nil {
		return nil, err
	}
	if g.dialGuard, err = newDialGuard(labeled); err != nil {
		return nil, err
	}
	lm, err := newLinkMetrics(labeled)
	if err != nil {
		return nil, err
	}
	g.links = newLinks(lm)
	g.pool = newPool(g)
	return g, nil
}

// Ready is closed once the gateway listens on all its addresses and has
// registered its record.
func (g *Gateway) Ready() <-chan struct{} { return g.ready }

// Stopped is closed once Run has stopped every goroutine and closed every
// socket.
func (g *Gateway) Stopped() <-chan struct{} { return g.stopped }

// DrainStarted is closed when the gateway starts draining: its record is
// withdrawn and new streams are refused.
func (g *Gateway) DrainStarted() <-chan struct{} { return g.drainCh }

// Draining reports whether the gateway refuses new streams.
func (g *Gateway) Draining() bool { return g.draining.Load() }

// IngressAddr is the bound UDP address of the QUIC ingress. It is nil
// before Ready is closed.
func (g *Gateway) IngressAddr() net.Addr { return g.addr(func() net.Addr { return g.ingressAddr }) }

// EgressAddr is the bound TCP address of the egress listener. It is nil
// before Ready is closed.
func (g *Gateway) EgressAddr() net.Addr { return g.addr(func() net.Addr { return g.egressLn.Addr() }) }

// AdminAddr is the bound TCP address of the admin server. It is nil before
// Ready is closed.
func (g *Gateway) AdminAddr() net.Addr { return g.addr(func() net.Addr { return g.adminLn.Addr() }) }

func (g *Gateway) addr(f func() net.Addr) net.Addr {
	select {
	case <-g.ready:
		return f()
	default:
		return nil
	}
}

// ActiveStreams is the number of streams being set up or relayed, in both
// directions.
func (g *Gateway) ActiveStreams() int { return g.active.count() }
