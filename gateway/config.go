package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"time"

	"github.com/hashicorp/go-multierror"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/strait-mesh/strait/federation"
	"github.com/strait-mesh/strait/trust"
)

// Defaults of Config. The live configuration (federation.Snapshot.Config)
// overrides the timeouts and limits while the gateway runs.
const (
	DefaultIngressListenAddr = ":15443"
	DefaultEgressListenAddr  = ":15444"
	DefaultAdminListenAddr   = "127.0.0.1:15021"
	DefaultDrainTimeout      = 30 * time.Second
	DefaultIdleTimeout       = 30 * time.Second
	// DefaultKeepAlivePeriod is how long a connection may go without
	// receiving a packet before it sends a PING. It is short because the
	// PING is what moves a connection to its peer's new address: when a NAT
	// between two gateways rebinds (kube-proxy deletes the UDP conntrack
	// entries of every flow whose destination port is one of the node's UDP
	// NodePorts whenever a Service's endpoints change, so gateways dialing
	// the same NodePort number in other clusters lose theirs, and the next
	// packet may leave from another port), the remote quic-go server keeps
	// sending to the old address until it has validated the new one and
	// then received a non-probing packet from it. A caller waiting for its
	// answer sends nothing meanwhile, and the answer is lost until the next
	// PING (docs/operating.md, "NodePorts and UDP conntrack").
	DefaultKeepAlivePeriod    = time.Second
	DefaultHeaderTimeout      = 5 * time.Second
	DefaultDialTimeout        = 3 * time.Second
	DefaultMaxIncomingStreams = 10000
	DefaultRetryAboveRate     = 200
	DefaultHandshakeTimeout   = 3 * time.Second
	DefaultMaxConnsPerPeer    = 64
	DefaultMaxHandshakes      = 32
	// DefaultMaxHandshakesPerSource bounds the handshakes in progress from
	// one source address.
	DefaultMaxHandshakesPerSource = 8
	// MaxDefaultConnsPerRemoteGateway caps DefaultConnsPerRemoteGateway.
	MaxDefaultConnsPerRemoteGateway = 4
)

// DefaultConnsPerRemoteGateway is the number of QUIC connections the pool
// keeps to each remote gateway when Config.ConnsPerRemoteGateway is zero:
// GOMAXPROCS, at most MaxDefaultConnsPerRemoteGateway.
//
// quic-go handles each connection's packets (decryption, acknowledgements,
// stream frames) in one goroutine and sends them from another, so one
// connection keeps about one core busy and streams spread over N
// connections can use N. More connections than cores run no faster, and
// each costs a handshake (again at each renewal), keepalives, flow-control
// windows and a slot of the remote ingress' MaxConnsPerPeer. Past about
// four, the serial parts they all share become the limit: the one UDP
// socket and its reading goroutine of each gateway's transport, and the
// relays and proxies on both sides.
func DefaultConnsPerRemoteGateway() int {
	return max(1, min(runtime.GOMAXPROCS(0), MaxDefaultConnsPerRemoteGateway))
}

// Config configures a Gateway. Zero values mean the documented default.
type Config struct {
	// Cluster is the name of the gateway's cluster (a DNS label). Required.
	Cluster string
	// ID is unique among the cluster's gateways (a DNS label). Required.
	ID string
	// TrustDomain is the cluster's SPIFFE trust domain. Required.
	TrustDomain spiffeid.TrustDomain
	// Region and Zone locate the gateway, for locality-aware routing.
	Region, Zone string

	// IngressListenAddr is the UDP address of the QUIC ingress. Zero means
	// DefaultIngressListenAddr; port 0 picks a free port.
	IngressListenAddr string
	// IngressAdvertiseAddr is the address peers dial, written to the
	// Gateway record. Zero means the bound ingress address.
	IngressAdvertiseAddr string
	// EgressListenAddr is the TCP address where the cluster's proxies hand
	// over cross-cluster connections. Zero means DefaultEgressListenAddr.
	EgressListenAddr string
	// EgressAdvertiseAddr is the egress address written to the Gateway
	// record. Zero means the bound egress address.
	EgressAdvertiseAddr string
	// AdminListenAddr is the TCP address of the HTTP admin server
	// (/metrics, /healthz, /readyz). Zero means DefaultAdminListenAddr.
	AdminListenAddr string
	// Pprof serves the Go profiles under /debug/pprof/ on the admin
	// server. Zero means off.
	Pprof bool

	// SVIDs gives the gateway's X.509 SVID, which must be
	// spiffe://<TrustDomain>/strait/gateway/<Cluster>. Required.
	SVIDs x509svid.Source
	// Bundles gives the trust bundle of each federated trust domain.
	// Required.
	Bundles x509bundle.Source
	// Snapshots gives the federation's state. Required.
	Snapshots federation.SnapshotSource
	// Registry keeps the gateway's record in etcd. Nil means the gateway
	// does not register itself.
	Registry federation.Registry
	// Keyspace names the record's key. The zero Keyspace is the default.
	Keyspace federation.Keyspace

	// Logger receives the gateway's logs. Nil means slog.Default().
	Logger *slog.Logger
	// Metrics registers the gateway's metrics. Nil means a private
	// registry, served on /metrics.
	Metrics prometheus.Registerer
	// Gatherer is what /metrics serves. Nil means Metrics when it is a
	// prometheus.Gatherer, else the private registry.
	Gatherer prometheus.Gatherer
	// TrustMetrics counts the peer certificates refused in the gateway's
	// handshakes (strait_trust_handshake_failures_total by reason). Nil
	// means they are not counted.
	TrustMetrics *trust.Metrics

	// DrainTimeout, IdleTimeout, KeepAlivePeriod, HeaderTimeout,
	// DialTimeout and MaxIncomingStreams apply when the live configuration
	// leaves the field zero. Zero means the Default* constant of the same
	// name.
	//
	// Keep DrainTimeout above the proxies' session MaxAge (proxy/session,
	// 5s by default) plus the longest request that should survive a drain:
	// a proxy that cannot see the drain in etcd keeps carrying new streams
	// in a session through this gateway until the session's MaxAge, and
	// the streams a drain outlives are cut.
	DrainTimeout       time.Duration
	IdleTimeout        time.Duration
	KeepAlivePeriod    time.Duration
	HeaderTimeout      time.Duration
	DialTimeout        time.Duration
	MaxIncomingStreams uint32
	// HandshakeTimeout is the longest a QUIC handshake may go without
	// receiving a packet (quic-go's HandshakeIdleTimeout; a handshake also
	// fails after twice this in total). An attempt that goes silent holds a
	// handshake slot of the ingress this long. Zero means
	// DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// ConnsPerRemoteGateway is the number of QUIC connections the egress
	// keeps to each remote gateway; each new stream goes to the one with
	// the fewest open streams. Every connection is dialed, checked and
	// replaced on its own. At most DefaultMaxConnsPerPeer: a remote
	// ingress admits that many connections from all of a cluster's
	// gateways by default (MaxConnsPerPeer), so N connections from each of
	// k gateways need N*k below the remote's MaxConnsPerPeer, with room
	// for renewals. Zero means DefaultConnsPerRemoteGateway(): GOMAXPROCS,
	// at most 4.
	ConnsPerRemoteGateway int
	// MaxConnsPerPeer bounds the ingress connections one peer identity
	// (a remote cluster's gateways) may hold. Zero means
	// DefaultMaxConnsPerPeer.
	MaxConnsPerPeer int
	// MaxHandshakes bounds the incoming QUIC handshakes in progress;
	// attempts beyond it are refused before any cryptography. Zero means
	// DefaultMaxHandshakes.
	MaxHandshakes int
	// MaxHandshakesPerSource bounds the incoming handshakes in progress
	// from one source IP address. An attempt beyond it from an unvalidated
	// address gets a Retry (so that a spoofed address cannot use up a real
	// peer's share); from a validated address it is refused before any
	// cryptography. Zero means DefaultMaxHandshakesPerSource.
	MaxHandshakesPerSource int
	// RetryAboveHandshakes is the number of handshakes in progress from
	// which the ingress validates every new source address with a QUIC
	// Retry before it spends anything on the attempt: an attempt that never
	// answers the Retry (a silent or spoofed one) then costs one packet and
	// holds no slot. Zero means a quarter of MaxHandshakes (at least 1);
	// negative means never on this ground.
	RetryAboveHandshakes int
	// RetryAboveRate is the rate of new connection attempts per second
	// above which the ingress validates source addresses with a QUIC Retry.
	// Zero means DefaultRetryAboveRate; negative means always.
	RetryAboveRate float64

	// EndpointCIDRs are the address ranges the ingress may dial for the
	// cluster's endpoints while the live configuration lists none
	// (GatewayConfig.endpoint_cidrs). Nil means any address except
	// loopback, link-local, multicast and unspecified ones. A listed range
	// admits its addresses even when they are loopback: dev mode and tests
	// list 127.0.0.0/8 and ::1/128. Whatever the ranges, the ingress never
	// dials its own listeners nor EtcdEndpoints, multicast nor unspecified
	// addresses; the check runs on the resolved address at dial time.
	EndpointCIDRs []netip.Prefix
	// EtcdEndpoints are the etcd client URLs (or host:port) the gateway's
	// process uses; the ingress never dials them. Host names are resolved
	// when Run starts. Nil means none.
	EtcdEndpoints []string
	// Resolver resolves endpoint host names at dial time. Nil means
	// net.DefaultResolver.
	Resolver *net.Resolver

	// StatelessResetKey lets a restarted gateway reset its peers'
	// connections at once; give every replica behind one address the same
	// key. Nil disables stateless resets.
	StatelessResetKey *quic.StatelessResetKey
	// TokenKey encrypts address validation tokens; share it among replicas
	// behind one address. Nil means a random key.
	TokenKey *quic.TokenGeneratorKey

	// DialEndpoint dials local endpoints. Nil means a net.Dialer.
	DialEndpoint func(ctx context.Context, network, addr string) (net.Conn, error)
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
	// Version is written to the Gateway record.
	Version string
}

// withDefaults returns a copy of c with every zero field defaulted.
func (c Config) withDefaults() Config {
	c.IngressListenAddr = or(c.IngressListenAddr, DefaultIngressListenAddr)
	c.EgressListenAddr = or(c.EgressListenAddr, DefaultEgressListenAddr)
	c.AdminListenAddr = or(c.AdminListenAddr, DefaultAdminListenAddr)
	c.DrainTimeout = or(c.DrainTimeout, DefaultDrainTimeout)
	c.IdleTimeout = or(c.IdleTimeout, DefaultIdleTimeout)
	c.KeepAlivePeriod = or(c.KeepAlivePeriod, DefaultKeepAlivePeriod)
	c.HeaderTimeout = or(c.HeaderTimeout, DefaultHeaderTimeout)
	c.DialTimeout = or(c.DialTimeout, DefaultDialTimeout)
	c.HandshakeTimeout = or(c.HandshakeTimeout, DefaultHandshakeTimeout)
	c.MaxIncomingStreams = or(c.MaxIncomingStreams, DefaultMaxIncomingStreams)
	c.RetryAboveRate = or(c.RetryAboveRate, DefaultRetryAboveRate)
	c.MaxConnsPerPeer = or(c.MaxConnsPerPeer, DefaultMaxConnsPerPeer)
	c.MaxHandshakes = or(c.MaxHandshakes, DefaultMaxHandshakes)
	c.MaxHandshakesPerSource = or(c.MaxHandshakesPerSource, DefaultMaxHandshakesPerSource)
	c.RetryAboveHandshakes = or(c.RetryAboveHandshakes, max(c.MaxHandshakes/4, 1))
	c.ConnsPerRemoteGateway = or(c.ConnsPerRemoteGateway, DefaultConnsPerRemoteGateway())
	if c.Resolver == nil {
		c.Resolver = net.DefaultResolver
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.DialEndpoint == nil {
		c.DialEndpoint = (&net.Dialer{}).DialContext
	}
	return c
}

func or[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// validate reports every problem of a defaulted Config at once.
func (c Config) validate() error {
	var errs *multierror.Error
	add := func(err error) { errs = multierror.Append(errs, err) }
	if err := federation.ValidateLabel(c.Cluster); err != nil {
		add(errors.New("Cluster: " + err.Error()))
	}
	if err := federation.ValidateLabel(c.ID); err != nil {
		add(errors.New("ID: " + err.Error()))
	}
	if c.TrustDomain.IsZero() {
		add(errors.New("TrustDomain is required"))
	}
	if c.SVIDs == nil {
		add(errors.New("SVIDs is required"))
	}
	if c.Bundles == nil {
		add(errors.New("Bundles is required"))
	}
	if c.Snapshots == nil {
		add(errors.New("Snapshots is required"))
	}
	for i, p := range c.EndpointCIDRs {
		if !p.IsValid() {
			add(fmt.Errorf("EndpointCIDRs[%d] is not a valid prefix", i))
		}
	}
	for i, e := range c.EtcdEndpoints {
		if _, _, err := splitEtcdEndpoint(e); err != nil {
			add(fmt.Errorf("EtcdEndpoints[%d]: %w", i, err))
		}
	}
	if c.MaxHandshakesPerSource < 0 || c.MaxHandshakes < 0 || c.MaxConnsPerPeer < 0 {
		add(errors.New("MaxHandshakes, MaxHandshakesPerSource and MaxConnsPerPeer must not be negative"))
	}
	if c.ConnsPerRemoteGateway < 0 || c.ConnsPerRemoteGateway > DefaultMaxConnsPerPeer {
		add(fmt.Errorf("ConnsPerRemoteGateway is %d, want 1 to %d (DefaultMaxConnsPerPeer, what a remote ingress admits from one cluster by default)", c.ConnsPerRemoteGateway, DefaultMaxConnsPerPeer))
	}
	for _, d := range []time.Duration{c.DrainTimeout, c.IdleTimeout, c.KeepAlivePeriod, c.HeaderTimeout, c.DialTimeout, c.HandshakeTimeout} {
		if d < 0 {
			add(errors.New("timeouts must not be negative"))
			break
		}
	}
	return errs.ErrorOrNil()
}
