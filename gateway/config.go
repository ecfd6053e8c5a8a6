package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net"
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
	DefaultIngressListenAddr  = ":15443"
	DefaultEgressListenAddr   = ":15444"
	DefaultAdminListenAddr    = "127.0.0.1:15021"
	DefaultDrainTimeout       = 30 * time.Second
	DefaultIdleTimeout        = 30 * time.Second
	DefaultKeepAlivePeriod    = 5 * time.Second
	DefaultHeaderTimeout      = 5 * time.Second
	DefaultDialTimeout        = 3 * time.Second
	DefaultMaxIncomingStreams = 10000
	DefaultRetryAboveRate     = 200
	DefaultHandshakeTimeout   = 5 * time.Second
	DefaultMaxConnsPerPeer    = 64
	DefaultMaxHandshakes      = 32
)

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
	DrainTimeout       time.Duration
	IdleTimeout        time.Duration
	KeepAlivePeriod    time.Duration
	HeaderTimeout      time.Duration
	DialTimeout        time.Duration
	MaxIncomingStreams uint32
	// HandshakeTimeout bounds a QUIC handshake. Zero means
	// DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// MaxConnsPerPeer bounds the ingress connections one peer identity
	// (a remote cluster's gateways) may hold. Zero means
	// DefaultMaxConnsPerPeer.
	MaxConnsPerPeer int
	// MaxHandshakes bounds the incoming QUIC handshakes in progress;
	// attempts beyond it are refused before any cryptography. Zero means
	// DefaultMaxHandshakes.
	MaxHandshakes int
	// RetryAboveRate is the rate of new connection attempts per second
	// above which the ingress validates source addresses with a QUIC Retry.
	// Zero means DefaultRetryAboveRate; negative means always.
	RetryAboveRate float64

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
	for _, d := range []time.Duration{c.DrainTimeout, c.IdleTimeout, c.KeepAlivePeriod, c.HeaderTimeout, c.DialTimeout, c.HandshakeTimeout} {
		if d < 0 {
			add(errors.New("timeouts must not be negative"))
			break
		}
	}
	return errs.ErrorOrNil()
}
