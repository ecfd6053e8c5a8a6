package devcluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sync/errgroup"

	"github.com/strait-mesh/strait/federation"
	"github.com/strait-mesh/strait/federation/embedded"
	"github.com/strait-mesh/strait/gateway"
	"github.com/strait-mesh/strait/internal/demo"
	"github.com/strait-mesh/strait/internal/node"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
	"github.com/strait-mesh/strait/proxy"
	"github.com/strait-mesh/strait/trust"
)

// gatewayDrainTimeout keeps Ctrl-C of `strait dev` well under 5 seconds.
const gatewayDrainTimeout = time.Second

// Federation is a running in-process federation.
type Federation struct {
	cfg   Config
	log   *slog.Logger
	ready chan struct{}

	mu       sync.Mutex
	etcd     *embedded.Server
	clusters map[string]*Cluster
}

// Cluster is one running cluster of a Federation.
type Cluster struct {
	Name        string
	TrustDomain spiffeid.TrustDomain
	CA          *trust.CA
	Node        *node.Node
	Gateway     *gateway.Gateway
	// Metrics is the registry of every component of the cluster; the
	// gateway's admin server serves it on /metrics, with the Go runtime and
	// process metrics.
	Metrics *prometheus.Registry
	// TrustMetrics, registered on Metrics, count the SVIDs, bundles, TLS
	// handshakes and refused peer certificates of every component of the
	// cluster.
	TrustMetrics *trust.Metrics
	// Proxies by service name; the client proxy is under "client".
	Proxies map[string]*proxy.Proxy
	// Echo servers by service name, for tests.
	Echo map[string]*demo.EchoServer

	spec  ClusterSpec
	tasks []func(context.Context) error
}

// New validates cfg; Run starts the federation.
func New(cfg Config) (*Federation, error) {
	cfg.populate()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Federation{cfg: cfg, log: cfg.Logger, ready: make(chan struct{}), clusters: map[string]*Cluster{}}, nil
}

// Ready is closed when every component runs and every cluster sees every
// export, endpoint and trust bundle.
func (f *Federation) Ready() <-chan struct{} { return f.ready }

// EtcdEndpoints are the client URLs of the embedded etcd.
func (f *Federation) EtcdEndpoints() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.etcd.Endpoints()
}

// Cluster returns a running cluster by name, or nil.
func (f *Federation) Cluster(name string) *Cluster {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.clusters[name]
}

// UpstreamAddr is the address of a client upstream listener of a cluster,
// for the given service, or "" when there is none.
func (f *Federation) UpstreamAddr(cluster, service string) string {
	c := f.Cluster(cluster)
	if c == nil || c.spec.Client == nil {
		return ""
	}
	for i, u := range c.spec.Client.Upstreams {
		if u.Service == service {
			return c.Proxies[clientProxy].UpstreamAddr(i).String()
		}
	}
	return ""
}

const clientProxy = "client"

// Run starts etcd and every cluster, and runs them until ctx is cancelled.
// Components stop first (gateways drain, registrations are withdrawn), then
// etcd. It returns nil after a clean stop on cancel.
func (f *Federation) Run(ctx context.Context) error {
	srv, err := embedded.Start(ctx, embedded.Config{Members: []embedded.Member{{
		Name: "dev", Dir: filepath.Join(f.cfg.DataDir, "etcd"),
		ClientURL: f.cfg.EtcdClientURL, PeerURL: f.cfg.EtcdPeerURL,
	}}, LogLevel: f.cfg.EtcdLogLevel})
	if err != nil {
		return fmt.Errorf("devcluster: %w", err)
	}
	defer srv.Close()
	f.mu.Lock()
	f.etcd = srv
	f.mu.Unlock()

	cli, err := federation.Dial(federation.ClientConfig{Endpoints: srv.Endpoints()})
	if err != nil {
		return fmt.Errorf("devcluster: %w", err)
	}
	defer cli.Close()

	g, gctx := errgroup.WithContext(ctx)
	for _, spec := range f.cfg.Clusters {
		c, err := f.buildCluster(gctx, cli, spec)
		if err != nil {
			return err
		}
		for _, task := range c.tasks {
			g.Go(func() error { return ignoreCanceled(task(gctx)) })
		}
	}
	g.Go(func() error { return f.waitReady(gctx) })
	if err := g.Wait(); err != nil {
		return err
	}
	return nil
}

func ignoreCanceled(err error) error {
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// buildCluster creates the CA, node, gateway, apps and proxies of a cluster
// and writes its exports; it starts nothing.
func (f *Federation) buildCluster(ctx context.Context, cli *clientv3.Client, spec ClusterSpec) (*Cluster, error) {
	td, err := spiffeid.TrustDomainFromString(spec.Name + f.cfg.TrustDomainSuffix)
	if err != nil {
		return nil, fmt.Errorf("devcluster: cluster %s: %w", spec.Name, err)
	}
	dir := filepath.Join(f.cfg.DataDir, spec.Name)
	log := f.log.With("cluster", spec.Name)
	ca, err := trust.NewCA(trust.CAConfig{TrustDomain: td, Dir: filepath.Join(dir, "ca")})
	if err != nil {
		return nil, fmt.Errorf("devcluster: cluster %s: %w", spec.Name, err)
	}
	reg := prometheus.NewRegistry()
	tm, err := trust.NewMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("devcluster: cluster %s: %w", spec.Name, err)
	}
	n, err := node.New(node.Config{
		Cluster: spec.Name, TrustDomain: td, Etcd: cli, Keyspace: f.cfg.Keyspace,
		SnapshotPath: filepath.Join(dir, "snapshot.json"), LeaseTTL: f.cfg.LeaseTTL,
		LocalBundle: ca, CA: ca, Logger: log, Metrics: reg, TrustMetrics: tm,
	})
	if err != nil {
		return nil, fmt.Errorf("devcluster: cluster %s: %w", spec.Name, err)
	}
	c := &Cluster{
		Name: spec.Name, TrustDomain: td, CA: ca, Node: n, Metrics: reg, TrustMetrics: tm,
		Proxies: map[string]*proxy.Proxy{}, Echo: map[string]*demo.EchoServer{}, spec: spec,
	}
	c.tasks = append(c.tasks, n.Run)
	if err := f.addGateway(c, cli.Endpoints(), log); err != nil {
		return nil, err
	}
	for _, s := range spec.Services {
		if err := f.addService(ctx, c, s, log); err != nil {
			return nil, err
		}
	}
	if spec.Client != nil {
		if err := f.addClient(c, log); err != nil {
			return nil, err
		}
	}
	f.mu.Lock()
	f.clusters[spec.Name] = c
	f.mu.Unlock()
	return c, nil
}

// svidSource issues the SVIDs of id from the cluster's CA and rotates them.
func (c *Cluster) svidSource(id spiffeid.ID, log *slog.Logger) (*trust.CASource, error) {
	src, err := trust.NewCASource(trust.CASourceConfig{CA: c.CA, ID: id, Logger: log, Metrics: c.TrustMetrics})
	if err != nil {
		return nil, fmt.Errorf("devcluster: cluster %s: %w", c.Name, err)
	}
	c.tasks = append(c.tasks, src.Run)
	return src, nil
}

func (f *Federation) addGateway(c *Cluster, etcd []string, log *slog.Logger) error {
	id, err := trust.GatewayID(c.TrustDomain, c.Name)
	if err != nil {
		return err
	}
	svids, err := c.svidSource(id, log)
	if err != nil {
		return err
	}
	gw, err := gateway.New(gateway.Config{
		Cluster: c.Name, ID: "gw-0", TrustDomain: c.TrustDomain,
		Region: c.spec.Region, Zone: c.spec.Zone,
		IngressListenAddr: "127.0.0.1:0", EgressListenAddr: "127.0.0.1:0",
		AdminListenAddr: or(c.spec.GatewayAdminAddr, "127.0.0.1:0"),
		SVIDs:           svids, Bundles: c.Node.Bundles, Snapshots: c.Node.Cache,
		Registry: c.Node.Registrar, Keyspace: f.cfg.Keyspace,
		Logger: log.With("component", "gateway"), Metrics: c.Metrics, Gatherer: c.Metrics, TrustMetrics: c.TrustMetrics,
		Pprof:         f.cfg.Pprof,
		DrainTimeout:  gatewayDrainTimeout,
		EndpointCIDRs: f.cfg.EndpointCIDRs, EtcdEndpoints: etcd,
	})
	if err != nil {
		return fmt.Errorf("devcluster: cluster %s: %w", c.Name, err)
	}
	c.Gateway = gw
	c.tasks = append(c.tasks, gw.Run)
	return nil
}

// addService starts the demo app's listener, builds its proxy and exports
// the service.
func (f *Federation) addService(ctx context.Context, c *Cluster, s ServiceSpec, log *slog.Logger) error {
	log = log.With("service", s.Name)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("devcluster: %s app: %w", s.Name, err)
	}
	switch s.App {
	case AppEcho:
		echo := &demo.EchoServer{Logger: log}
		c.Echo[s.Name] = echo
		c.tasks = append(c.tasks, serveUntilDone(ln, echo.Serve, echo.Close))
	default:
		h := &demo.HTTPServer{Cluster: c.Name, Logger: log}
		c.tasks = append(c.tasks, serveUntilDone(ln, h.Serve, h.Close))
	}
	id, err := trust.WorkloadID(c.TrustDomain, s.Namespace, s.Name)
	if err != nil {
		return err
	}
	svids, err := c.svidSource(id, log)
	if err != nil {
		return err
	}
	ports := []*straitv1.ServicePort{{Name: "tcp", Port: uint32(s.Port), Protocol: straitv1.Protocol_PROTOCOL_TCP}}
	p, err := proxy.New(proxy.Config{
		Cluster: c.Name, Namespace: s.Namespace, Service: s.Name, ServiceAccount: s.Name,
		ID: s.Name + "-0", Region: c.spec.Region, Zone: c.spec.Zone,
		InboundListenAddr: "127.0.0.1:0", AppAddr: ln.Addr().String(), Ports: ports,
		HealthCheck: proxy.HealthCheck{Interval: time.Second},
		SVIDs:       svids, Bundles: c.Node.Bundles, Snapshots: c.Node.Cache,
		Registry: c.Node.Registrar, Keyspace: f.cfg.Keyspace,
		Logger: log.With("component", "proxy"), Metrics: prometheus.WrapRegistererWith(prometheus.Labels{"proxy": s.Name}, c.Metrics), TrustMetrics: c.TrustMetrics,
		DrainTimeout: gatewayDrainTimeout,
	})
	if err != nil {
		return fmt.Errorf("devcluster: cluster %s service %s: %w", c.Name, s.Name, err)
	}
	c.Proxies[s.Name] = p
	c.tasks = append(c.tasks, p.Run)
	if !s.Export {
		return nil
	}
	// The service is served by its proxy's identity only: the proxy runs as
	// service account s.Name.
	_, err = c.Node.Store.PutExport(ctx, &straitv1.Export{
		Cluster: c.Name, Namespace: s.Namespace, Service: s.Name, Ports: ports, Consumers: s.Consumers,
		Servers: []string{s.Name},
	})
	if err != nil {
		return fmt.Errorf("devcluster: export %s.%s from %s: %w", s.Name, s.Namespace, c.Name, err)
	}
	return nil
}

func (f *Federation) addClient(c *Cluster, log *slog.Logger) error {
	spec := c.spec.Client
	id, err := trust.WorkloadID(c.TrustDomain, defaultNamespace, spec.ServiceAccount)
	if err != nil {
		return err
	}
	svids, err := c.svidSource(id, log)
	if err != nil {
		return err
	}
	var ups []proxy.Upstream
	for _, u := range spec.Upstreams {
		ups = append(ups, proxy.Upstream{
			Service: federation.ServiceKey{Namespace: u.Namespace, Name: u.Service},
			Port:    u.Port, ListenAddr: u.ListenAddr,
		})
	}
	p, err := proxy.New(proxy.Config{
		Cluster: c.Name, Namespace: defaultNamespace, ServiceAccount: spec.ServiceAccount,
		ID: clientProxy, Region: c.spec.Region, Zone: c.spec.Zone, Upstreams: ups,
		SVIDs: svids, Bundles: c.Node.Bundles, Snapshots: c.Node.Cache, Keyspace: f.cfg.Keyspace,
		Logger: log.With("component", "proxy"), Metrics: prometheus.WrapRegistererWith(prometheus.Labels{"proxy": clientProxy}, c.Metrics), TrustMetrics: c.TrustMetrics,
		DrainTimeout: gatewayDrainTimeout,
	})
	if err != nil {
		return fmt.Errorf("devcluster: cluster %s client: %w", c.Name, err)
	}
	c.Proxies[clientProxy] = p
	c.tasks = append(c.tasks, p.Run)
	return nil
}

// serveUntilDone serves ln until ctx ends, then closes the server.
func serveUntilDone(ln net.Listener, serve func(net.Listener) error, closeFn func() error) func(context.Context) error {
	return func(ctx context.Context) error {
		errc := make(chan error, 1)
		go func() { errc <- serve(ln) }()
		select {
		case <-ctx.Done():
			_ = closeFn()
			<-errc
			return ctx.Err()
		case err := <-errc:
			return err
		}
	}
}
