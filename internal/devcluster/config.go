package devcluster

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/hashicorp/go-multierror"

	"github.com/strait-mesh/strait/federation"
)

// AppKind selects the demo application behind a service's proxy.
type AppKind string

// The demo applications.
const (
	// AppHTTP answers GET / with its cluster and the caller's SPIFFE ID.
	AppHTTP AppKind = "http"
	// AppEcho echoes bytes and records the callers' SPIFFE IDs.
	AppEcho AppKind = "echo"
)

// Config describes the federation to run. Zero values mean the documented
// default.
type Config struct {
	// DataDir holds etcd's data, the CAs and the snapshots. Required.
	DataDir string
	// EtcdClientURL is where the embedded etcd serves clients. Zero means a
	// free loopback port.
	EtcdClientURL string
	// EtcdPeerURL is the embedded etcd's peer URL. Zero means a free port.
	EtcdPeerURL string
	// EtcdLogLevel is the embedded etcd's own log level. Zero means
	// "fatal": etcd logs closed listeners as errors on every clean stop.
	EtcdLogLevel string
	// TrustDomainSuffix makes each cluster's trust domain
	// "<cluster><suffix>". Zero means ".strait.local".
	TrustDomainSuffix string
	// Keyspace is the etcd keyspace. Zero means the default prefix.
	Keyspace federation.Keyspace
	// LeaseTTL is the TTL of gateway and endpoint registrations. Zero means
	// federation.DefaultLeaseTTL.
	LeaseTTL time.Duration
	// Clusters lists the clusters, each with its services and clients.
	Clusters []ClusterSpec
	// Logger receives every component's logs. Nil discards them.
	Logger *slog.Logger
	// EndpointCIDRs are the ranges the gateways may dial for endpoints (see
	// gateway.Config.EndpointCIDRs). Nil means loopback, 127.0.0.0/8 and
	// ::1/128: dev mode opts in to loopback, where its proxies listen.
	EndpointCIDRs []netip.Prefix
	// Pprof serves the Go profiles under /debug/pprof/ on every gateway's
	// admin port. Zero means off.
	Pprof bool
}

// ClusterSpec is one cluster of the federation.
type ClusterSpec struct {
	// Name is the cluster's name, a DNS label.
	Name string
	// Region and Zone locate the cluster's gateway and proxies.
	Region, Zone string
	// GatewayAdminAddr is the gateway's admin listen address. Zero means a
	// free loopback port.
	GatewayAdminAddr string
	// Services run in this cluster, each an app behind its proxy.
	Services []ServiceSpec
	// Client is a client-only proxy with upstream listeners, if any.
	Client *ClientSpec
}

// ServiceSpec is a service with one endpoint: a demo app and its proxy.
type ServiceSpec struct {
	// Name and Namespace name the service. Namespace zero means "default".
	Name, Namespace string
	// Port is the service port callers name. Required.
	Port uint16
	// App is the demo application. Zero means AppHTTP.
	App AppKind
	// Export exports the service to the other clusters.
	Export bool
	// Consumers are the SPIFFE IDs or trust domains (spiffe://td) allowed
	// from outside the cluster.
	Consumers []string
}

// ClientSpec is a client-only proxy: the workload's service account and
// its upstream listeners.
type ClientSpec struct {
	// ServiceAccount names the client's SPIFFE ID
	// spiffe://<td>/ns/default/sa/<ServiceAccount>. Zero means "client".
	ServiceAccount string
	// Upstreams are the listeners the client's app connects to.
	Upstreams []UpstreamSpec
}

// UpstreamSpec is one upstream listener of a client proxy.
type UpstreamSpec struct {
	// Service, Namespace and Port name the destination. Namespace zero
	// means "default".
	Service, Namespace string
	Port               uint16
	// ListenAddr is where the app connects. Zero means a free loopback
	// port.
	ListenAddr string
}

const (
	defaultNamespace         = "default"
	defaultTrustDomainSuffix = ".strait.local"
	defaultClientAccount     = "client"
)

func (c *Config) populate() {
	c.EtcdLogLevel = or(c.EtcdLogLevel, "fatal")
	if c.TrustDomainSuffix == "" {
		c.TrustDomainSuffix = defaultTrustDomainSuffix
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.EndpointCIDRs == nil {
		c.EndpointCIDRs = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	}
	for i := range c.Clusters {
		cl := &c.Clusters[i]
		for j := range cl.Services {
			s := &cl.Services[j]
			s.Namespace = or(s.Namespace, defaultNamespace)
			s.App = or(s.App, AppHTTP)
		}
		if cl.Client != nil {
			cl.Client.ServiceAccount = or(cl.Client.ServiceAccount, defaultClientAccount)
			for j := range cl.Client.Upstreams {
				u := &cl.Client.Upstreams[j]
				u.Namespace = or(u.Namespace, defaultNamespace)
				u.ListenAddr = or(u.ListenAddr, "127.0.0.1:0")
			}
		}
	}
}

func or[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

func (c *Config) validate() error {
	var errs *multierror.Error
	add := func(format string, args ...any) { errs = multierror.Append(errs, fmt.Errorf(format, args...)) }
	if c.DataDir == "" {
		errs = multierror.Append(errs, errors.New("data dir is required"))
	}
	if len(c.Clusters) == 0 {
		errs = multierror.Append(errs, errors.New("at least one cluster is required"))
	}
	seen := map[string]bool{}
	for _, cl := range c.Clusters {
		if err := federation.ValidateLabel(cl.Name); err != nil {
			add("cluster %q: %w", cl.Name, err)
		}
		if seen[cl.Name] {
			add("cluster %q is listed twice", cl.Name)
		}
		seen[cl.Name] = true
		for _, s := range cl.Services {
			if err := federation.ValidateLabel(s.Name); err != nil {
				add("cluster %s service %q: %w", cl.Name, s.Name, err)
			}
			if s.Port == 0 {
				add("cluster %s service %s: port is required", cl.Name, s.Name)
			}
			if s.App != AppHTTP && s.App != AppEcho {
				add("cluster %s service %s: unknown app %q", cl.Name, s.Name, s.App)
			}
		}
	}
	if err := errs.ErrorOrNil(); err != nil {
		return fmt.Errorf("devcluster: config: %w", err)
	}
	return nil
}

// DefaultConfig is the topology of `strait dev`: clusters east and west;
// west serves hello.default (the HTTP demo) on port 8080, exported to east;
// east runs a client proxy with an upstream for it on 127.0.0.1:18080.
func DefaultConfig(dataDir string) Config {
	return Config{
		DataDir:       dataDir,
		EtcdClientURL: federation.DefaultEndpoint,
		Clusters: []ClusterSpec{
			{
				Name: "east", Region: "us-east", Zone: "us-east-1a",
				Client: &ClientSpec{Upstreams: []UpstreamSpec{
					{Service: "hello", Port: 8080, ListenAddr: DefaultHelloUpstream},
				}},
			},
			{
				Name: "west", Region: "us-west", Zone: "us-west-1a",
				Services: []ServiceSpec{{
					Name: "hello", Port: 8080, App: AppHTTP, Export: true,
					Consumers: []string{"spiffe://east" + defaultTrustDomainSuffix},
				}},
			},
		},
	}
}

// DefaultHelloUpstream is where `strait dev` serves the east client's
// upstream for hello.default.
const DefaultHelloUpstream = "127.0.0.1:18080"
