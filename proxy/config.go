package proxy

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"time"

	"github.com/hashicorp/go-multierror"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/strait-mesh/strait/federation"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
	"github.com/strait-mesh/strait/proxy/capture"
	"github.com/strait-mesh/strait/proxy/session"
	"github.com/strait-mesh/strait/trust"
)

// Defaults of Config and HealthCheck.
const (
	DefaultNamespace         = "default"
	DefaultInboundListenAddr = "0.0.0.0:15006"
	DefaultHealthInterval    = 5 * time.Second
	DefaultHealthTimeout     = time.Second
	// DefaultHealthFailureThreshold is HealthCheck.FailureThreshold's default.
	DefaultHealthFailureThreshold = 3
	DefaultDialTimeout            = 3 * time.Second
	DefaultHandshakeTimeout       = 5 * time.Second
	// DefaultConnectTimeout is ConnectTimeout's default with the default
	// dial and handshake timeouts: one whole attempt.
	DefaultConnectTimeout = DefaultDialTimeout + DefaultHandshakeTimeout
	DefaultDrainTimeout   = 30 * time.Second
	// DefaultExpiryGrace is ExpiryGrace's default.
	DefaultExpiryGrace = 10 * time.Second
)

// Config configures a Proxy. Every zero value means the documented default.
type Config struct {
	// Cluster is the name of the cluster the proxy runs in. Required.
	Cluster string
	// Namespace of the workload. Zero means DefaultNamespace.
	Namespace string
	// Service is the service the workload serves. Empty makes a client-only
	// proxy: no inbound listener, no health checks, no registration.
	Service string
	// ServiceAccount of the workload; its SVID is expected to be
	// spiffe://<trust-domain>/ns/<Namespace>/sa/<ServiceAccount> (another
	// service account is logged; with Service set, an SVID that is not a
	// workload of Namespace stops Run, since callers would refuse it). Zero
	// means Service.
	ServiceAccount string
	// ID identifies this endpoint within the service. Zero means the host
	// name.
	ID string
	// Region and Zone of the workload, published in the Endpoint record.
	Region, Zone string

	// InboundListenAddr is where the inbound mTLS listener binds. Zero means
	// DefaultInboundListenAddr; port 0 picks a free port.
	InboundListenAddr string
	// InboundAdvertiseAddr is the address published in the Endpoint record.
	// Zero means the bound inbound address, with an unspecified host
	// (0.0.0.0 or ::) replaced by 127.0.0.1: set it on real networks.
	InboundAdvertiseAddr string
	// AppAddr is the host:port of the application. Required with Service.
	AppAddr string
	// NoProxyHeader stops the proxy from writing a PROXY v2 header on its
	// connections to the application (relayed ones and health checks), for
	// applications that do not read one. They then learn neither the
	// caller's address nor its SPIFFE ID.
	NoProxyHeader bool
	// Ports are the service's ports, published in the Endpoint record. Zero
	// means one TCP port named "tcp" with AppAddr's port.
	Ports []*straitv1.ServicePort

	// Upstreams are the explicit outbound listeners.
	Upstreams []Upstream
	// Transparent, when set, runs the listener that capture rules redirect
	// the pod's outbound TCP to (see package proxy/capture).
	Transparent *Transparent
	// Mark is the SO_MARK of every connection the proxy dials, so that
	// capture rules do not redirect the proxy's own traffic. Zero means no
	// mark; a mark needs CAP_NET_ADMIN.
	Mark uint32

	// HealthCheck configures the active checks of the application.
	HealthCheck HealthCheck

	// DialTimeout bounds a TCP connect to a candidate or the application.
	// Zero means DefaultDialTimeout.
	DialTimeout time.Duration
	// HandshakeTimeout bounds an inner TLS handshake. Zero means
	// DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// ConnectTimeout bounds how long an outbound connection may take to
	// reach a destination, across every candidate it tries: from the
	// moment the kernel accepted it (so that the time it waited in the
	// listener's accept queue, or for the CPU, while the proxy was stopped
	// or starved counts) to a completed inner handshake. No attempt starts
	// or goes on past it; the connection is then reset and counted in
	// strait_proxy_shed_connections_total. It stands for the caller's
	// patience, which the proxy cannot see: without it, a proxy starved of
	// CPU for 40 s (3 s stops; failover suite, scenario 10, at load
	// average 10-16) had relayed 7,316 connections for 62 callers still
	// there, some accepted 24 s before, and new connections waited behind
	// them and failed for 16-19 s after the starvation ended. Zero means
	// DialTimeout + HandshakeTimeout (DefaultConnectTimeout, 8 s, at their
	// defaults): one attempt may always use both, so only retries and
	// stale connections are cut. A shorter budget sheds sooner, and fails
	// connections that callers more patient than it would have waited for
	// (at 1,000 clusters in docs/scale.md's run 20, a 5 s budget shed 194
	// connections whose callers waited 10 s).
	ConnectTimeout time.Duration
	// DrainTimeout bounds how long Run waits for open connections after its
	// context is cancelled. Zero means DefaultDrainTimeout.
	DrainTimeout time.Duration
	// ExpiryGrace is how long an inbound connection may still run once its
	// caller's certificate has expired (or MaxConnectionAge has passed);
	// it is closed then. Zero means the cluster's GatewayConfig
	// expiry_grace, and DefaultExpiryGrace when that is zero too.
	ExpiryGrace time.Duration
	// MaxConnectionAge closes an inbound connection this long after its
	// handshake (plus ExpiryGrace). Zero means the cluster's GatewayConfig
	// max_connection_age, and no limit beyond the caller's certificate
	// when that is zero too.
	MaxConnectionAge time.Duration

	// SVIDs provides the workload's X.509 SVID. Required.
	SVIDs x509svid.Source
	// Bundles provides the trust bundles peers are verified against, one per
	// trust domain. Required.
	Bundles x509bundle.Source
	// Snapshots provides the federation snapshot routing and policy read.
	// Required.
	Snapshots federation.SnapshotSource
	// Registry receives the Endpoint record. Nil means no registration.
	Registry federation.Registry
	// Keyspace builds the Endpoint record's key. The zero value uses
	// federation.DefaultPrefix.
	Keyspace federation.Keyspace

	// Logger receives the proxy's logs. Nil discards them.
	Logger *slog.Logger
	// Metrics registers the proxy's metrics. Nil means a private registry.
	Metrics prometheus.Registerer
	// Sessions selects pooled inner mTLS sessions: SessionsOn offers them
	// to destinations (ALPN) and accepts them from callers; a peer without
	// them gets one handshake per connection. Zero means
	// DefaultSessionMode.
	Sessions SessionMode
	// SessionPipeline selects, with sessions on, whether a new
	// connection's first bytes go out with its stream's request
	// (PipelineOn: one round trip to a warm destination) or after the
	// destination's answer (PipelineOff: two, and no new connection fails
	// when a path dies). Zero means DefaultPipelineMode (off).
	SessionPipeline PipelineMode
	// Session tunes sessions (streams per session, idle timeout, renewal
	// before certificate expiry, liveness pings; with PipelineOn, how
	// lately a session must have heard from its peer to pipeline). Zero
	// values mean the session package's defaults; with PipelineOff,
	// Session.Pipeline is set negative (never).
	Session session.Config

	// TrustMetrics counts the peer certificates refused in the inner mTLS
	// handshakes (strait_trust_handshake_failures_total by reason). Nil
	// means they are not counted.
	TrustMetrics *trust.Metrics
}

// Transparent configures the listener for captured connections. A
// connection whose original destination is a virtual IP of a service is
// routed like an upstream connection to that service, on the original port;
// any other connection is relayed, unchanged, to its original destination.
type Transparent struct {
	// ListenAddr is where captured connections arrive. Zero means
	// 127.0.0.1:15001 (capture.DefaultOutboundPort).
	ListenAddr string
	// Services maps virtual IPs to services; the DNS responder's table
	// (dns.Server.VIPs) is one. Nil passes every connection through.
	Services ServiceResolver
}

// ServiceResolver tells which service a virtual IP stands for.
type ServiceResolver interface {
	ServiceForAddr(addr netip.Addr) (federation.ServiceKey, bool)
}

// HealthCheck configures the active health checks of the application.
type HealthCheck struct {
	// Interval between checks. Zero means DefaultHealthInterval.
	Interval time.Duration
	// Timeout of one check. Zero means DefaultHealthTimeout, or Interval if
	// that is shorter.
	Timeout time.Duration
	// HTTPPath, when set, makes the check an HTTP GET of this path that must
	// answer 2xx; otherwise a check is a TCP connect. Either way the
	// connection starts with a PROXY v2 header with the LOCAL command.
	HTTPPath string
	// FailureThreshold is how many checks in a row must fail (time out or
	// answer badly) before the endpoint is withdrawn, so that one slow
	// check on a busy host does not flap it. A refused connection (nothing
	// listens: the app is gone) withdraws it at once. Zero means
	// DefaultHealthFailureThreshold.
	FailureThreshold int
}

// withDefaults returns cfg with every zero value replaced by its default.
func (cfg Config) withDefaults() Config {
	if cfg.Namespace == "" {
		cfg.Namespace = DefaultNamespace
	}
	if cfg.ServiceAccount == "" {
		cfg.ServiceAccount = cfg.Service
	}
	if cfg.ID == "" {
		cfg.ID, _ = os.Hostname()
	}
	if cfg.InboundListenAddr == "" {
		cfg.InboundListenAddr = DefaultInboundListenAddr
	}
	if len(cfg.Ports) == 0 && cfg.AppAddr != "" {
		if _, p, err := net.SplitHostPort(cfg.AppAddr); err == nil {
			if n, err := strconv.ParseUint(p, 10, 16); err == nil {
				cfg.Ports = []*straitv1.ServicePort{{Name: "tcp", Port: uint32(n), Protocol: straitv1.Protocol_PROTOCOL_TCP}}
			}
		}
	}
	cfg.HealthCheck = cfg.HealthCheck.withDefaults()
	if cfg.Sessions == SessionsDefault {
		cfg.Sessions = DefaultSessionMode
	}
	if cfg.SessionPipeline == PipelineDefault {
		cfg.SessionPipeline = DefaultPipelineMode
	}
	if cfg.SessionPipeline == PipelineOff {
		cfg.Session.Pipeline = -1
	}
	if cfg.Transparent != nil {
		t := *cfg.Transparent
		if t.ListenAddr == "" {
			t.ListenAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(capture.DefaultOutboundPort))
		}
		cfg.Transparent = &t
	}
	cfg.DialTimeout = orDefault(cfg.DialTimeout, DefaultDialTimeout)
	cfg.HandshakeTimeout = orDefault(cfg.HandshakeTimeout, DefaultHandshakeTimeout)
	cfg.ConnectTimeout = orDefault(cfg.ConnectTimeout, cfg.DialTimeout+cfg.HandshakeTimeout)
	cfg.DrainTimeout = orDefault(cfg.DrainTimeout, DefaultDrainTimeout)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = prometheus.NewRegistry()
	}
	return cfg
}

func (h HealthCheck) withDefaults() HealthCheck {
	h.Interval = orDefault(h.Interval, DefaultHealthInterval)
	h.Timeout = orDefault(h.Timeout, min(DefaultHealthTimeout, h.Interval))
	if h.FailureThreshold == 0 {
		h.FailureThreshold = DefaultHealthFailureThreshold
	}
	return h
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// validate reports every problem of a defaulted config at once.
func (cfg Config) validate() error {
	var errs *multierror.Error
	add := func(format string, args ...any) { errs = multierror.Append(errs, fmt.Errorf(format, args...)) }
	if err := federation.ValidateLabel(cfg.Cluster); err != nil {
		add("cluster: %w", err)
	}
	if err := federation.ValidateLabel(cfg.Namespace); err != nil {
		add("namespace: %w", err)
	}
	if cfg.Service != "" {
		errs = multierror.Append(errs, cfg.validateServer()...)
	}
	names := map[string]bool{}
	for i, u := range cfg.Upstreams {
		if err := u.validate(); err != nil {
			add("upstream %d (%s): %w", i, u.Name(), err)
		}
		if names[u.Name()] {
			add("upstream %d: %s is listed twice", i, u.Name())
		}
		names[u.Name()] = true
	}
	for _, d := range []struct {
		name string
		d    time.Duration
	}{{"dial timeout", cfg.DialTimeout}, {"handshake timeout", cfg.HandshakeTimeout}, {"connect timeout", cfg.ConnectTimeout}, {"drain timeout", cfg.DrainTimeout},
		{"expiry grace", cfg.ExpiryGrace}, {"maximum connection age", cfg.MaxConnectionAge},
		{"health check interval", cfg.HealthCheck.Interval}, {"health check timeout", cfg.HealthCheck.Timeout}} {
		if d.d < 0 {
			add("%s %v is negative", d.name, d.d)
		}
	}
	if cfg.Sessions != SessionsOn && cfg.Sessions != SessionsOff {
		add("session mode %d is unknown", cfg.Sessions)
	}
	if cfg.SessionPipeline != PipelineOn && cfg.SessionPipeline != PipelineOff {
		add("session pipeline mode %d is unknown", cfg.SessionPipeline)
	}
	if err := cfg.Session.Validate(); err != nil {
		add("%w", err)
	}
	if cfg.SVIDs == nil {
		add("an SVID source is required")
	}
	if cfg.Bundles == nil {
		add("a bundle source is required")
	}
	if cfg.Snapshots == nil {
		add("a snapshot source is required")
	}
	if t := cfg.Transparent; t != nil {
		if _, _, err := net.SplitHostPort(t.ListenAddr); err != nil {
			add("transparent listen address %q: %w", t.ListenAddr, err)
		}
	}
	if cfg.Service == "" && len(cfg.Upstreams) == 0 && cfg.Transparent == nil {
		add("nothing to do: no service, no upstream, no transparent listener")
	}
	if err := errs.ErrorOrNil(); err != nil {
		return wrapf("invalid config: %w", err)
	}
	return nil
}

// validateServer checks the fields a proxy with a service needs.
func (cfg Config) validateServer() []error {
	var errs []error
	if err := federation.ValidateLabel(cfg.Service); err != nil {
		errs = append(errs, fmt.Errorf("service: %w", err))
	}
	if cfg.ID == "" {
		errs = append(errs, errors.New("id is required (the host name is unknown)"))
	}
	if _, _, err := net.SplitHostPort(cfg.AppAddr); err != nil {
		errs = append(errs, fmt.Errorf("app address %q: %w", cfg.AppAddr, err))
	}
	if _, _, err := net.SplitHostPort(cfg.InboundListenAddr); err != nil {
		errs = append(errs, fmt.Errorf("inbound listen address %q: %w", cfg.InboundListenAddr, err))
	}
	if a := cfg.InboundAdvertiseAddr; a != "" {
		if _, _, err := net.SplitHostPort(a); err != nil {
			errs = append(errs, fmt.Errorf("inbound advertise address %q: %w", a, err))
		}
	}
	if len(cfg.Ports) == 0 {
		errs = append(errs, errors.New("ports: at least one port is required"))
	}
	return errs
}
