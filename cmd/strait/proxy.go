package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/sync/errgroup"

	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
	"github.com/strait-mesh/strait/proxy"
	"github.com/strait-mesh/strait/proxy/capture"
	"github.com/strait-mesh/strait/proxy/dns"
	"github.com/strait-mesh/strait/trust"
)

// proxyFile is the config file of `strait proxy`.
type proxyFile struct {
	// Cluster is the proxy's cluster. Required.
	Cluster string `json:"cluster"`
	// Namespace, Service and ServiceAccount describe the workload. Service
	// empty makes a client-only proxy. Namespace zero means "default";
	// ServiceAccount zero means Service.
	Namespace      string `json:"namespace,omitempty"`
	Service        string `json:"service,omitempty"`
	ServiceAccount string `json:"serviceAccount,omitempty"`
	// ID identifies the endpoint. Zero means the host name.
	ID     string `json:"id,omitempty"`
	Region string `json:"region,omitempty"`
	Zone   string `json:"zone,omitempty"`
	// Etcd and Identity as for the gateway.
	Etcd     etcdFile     `json:"etcd"`
	Identity identityFile `json:"identity"`
	// Inbound is the mTLS listener other proxies dial.
	Inbound listenFile `json:"inbound"`
	// App is the application's host:port.
	App string `json:"app,omitempty"`
	// NoProxyHeader stops the proxy from sending the PROXY protocol v2
	// header (which names the caller's SPIFFE ID) to an app that cannot
	// read it.
	NoProxyHeader bool `json:"noProxyHeader,omitempty"`
	// Transparent captures the pod's outbound connections and DNS (after
	// `strait proxy init` installed the rules in its network namespace):
	// <service>.<namespace>.svc.clusterset.local resolves to a virtual IP
	// that the proxy routes like an upstream.
	Transparent *transparentFile `json:"transparent,omitempty"`
	// Ports are the service's ports, e.g. {name: http, port: 8080}.
	Ports []portFile `json:"ports,omitempty"`
	// Upstreams are outbound listeners in the CLI form
	// "payments.default:9000=127.0.0.1:19000".
	Upstreams []string `json:"upstreams,omitempty"`
	// HealthCheck of the app: interval (zero means 5s), an optional HTTP
	// path (a TCP connect otherwise), and how many failed checks in a row
	// withdraw the endpoint (zero means 3; a refused connection withdraws
	// it at once).
	HealthCheck struct {
		Interval         duration `json:"interval,omitempty"`
		HTTPPath         string   `json:"httpPath,omitempty"`
		FailureThreshold int      `json:"failureThreshold,omitempty"`
	} `json:"healthCheck,omitempty"`
	// Admin serves /metrics and /healthz. Zero disables it.
	Admin listenFile `json:"admin,omitempty"`
	// SnapshotPath keeps the last federation snapshot.
	SnapshotPath string `json:"snapshotPath,omitempty"`
	// DrainTimeout bounds the drain on SIGTERM. Zero means 30s.
	DrainTimeout duration `json:"drainTimeout,omitempty"`
	// LogLevel is debug, info, warn or error. Zero means info.
	LogLevel string `json:"logLevel,omitempty"`
}

type transparentFile struct {
	// Listen is where captured TCP arrives. Zero means 127.0.0.1:15001.
	Listen string `json:"listen,omitempty"`
	// DNS is where the DNS responder listens. Zero means 127.0.0.1:15053.
	DNS string `json:"dns,omitempty"`
}

type portFile struct {
	Name string `json:"name"`
	Port uint32 `json:"port"`
}

func newProxyCmd() *cobra.Command {
	var (
		path      string
		upstreams []string
	)
	cmd := &cobra.Command{
		Use:   "proxy --config proxy.yaml",
		Short: "Run the proxy beside a workload",
		Long: `Run the per-workload proxy. Outbound, each upstream listener takes the
workload's connections to a global service: a healthy local endpoint is
dialed directly, otherwise the cluster's gateway carries the connection to
another cluster; the workload's mTLS session runs end to end to the
destination proxy. Inbound, the proxy terminates mTLS, checks the caller's
SPIFFE ID against the export's consumers, and hands the connection to the
application after a PROXY protocol v2 header that names the caller.`,
		Example: `  strait proxy --config /etc/strait/proxy.yaml --upstream payments.default:9000=127.0.0.1:19000`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var f proxyFile
			if err := readFileConfig(path, &f); err != nil {
				return fmt.Errorf("proxy: %w", err)
			}
			f.Upstreams = append(f.Upstreams, upstreams...)
			return runProxy(cmd.Context(), f)
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "", "proxy config file (YAML or JSON)")
	cmd.Flags().StringArrayVar(&upstreams, "upstream", nil, "an upstream listener, <service>.<namespace>[.<cluster>]:<port>=<listen addr> (repeatable)")
	_ = cmd.MarkFlagRequired("config")
	cmd.AddCommand(newProxyInitCmd(), newProxyCleanupCmd())
	return cmd
}

func (f proxyFile) proxyConfig() (proxy.Config, error) {
	cfg := proxy.Config{
		Cluster: f.Cluster, Namespace: f.Namespace, Service: f.Service, ServiceAccount: f.ServiceAccount,
		ID: f.ID, Region: f.Region, Zone: f.Zone,
		InboundListenAddr: f.Inbound.Listen, InboundAdvertiseAddr: f.Inbound.Advertise, AppAddr: f.App,
		HealthCheck: proxy.HealthCheck{
			Interval: time.Duration(f.HealthCheck.Interval), HTTPPath: f.HealthCheck.HTTPPath,
			FailureThreshold: f.HealthCheck.FailureThreshold,
		},
		DrainTimeout: time.Duration(f.DrainTimeout), Keyspace: keyspaceOf(f.Etcd),
		NoProxyHeader: f.NoProxyHeader,
	}
	for _, p := range f.Ports {
		cfg.Ports = append(cfg.Ports, &straitv1.ServicePort{Name: p.Name, Port: p.Port, Protocol: straitv1.Protocol_PROTOCOL_TCP})
	}
	for _, s := range f.Upstreams {
		u, err := proxy.ParseUpstream(s)
		if err != nil {
			return cfg, err
		}
		cfg.Upstreams = append(cfg.Upstreams, u)
	}
	return cfg, nil
}

func runProxy(ctx context.Context, f proxyFile) error {
	level, err := parseLevel(or(f.LogLevel, "info"))
	if err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("service", f.Service)
	cfg, err := f.proxyConfig()
	if err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ns, sa := or(f.Namespace, proxy.DefaultNamespace), or(f.ServiceAccount, f.Service)
	workloadID := func(td spiffeid.TrustDomain) (spiffeid.ID, error) {
		return trust.WorkloadID(td, ns, or(sa, "default"))
	}
	id, err := newIdentity(f.Identity, workloadID, log, reg)
	if err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	want, err := workloadID(id.td)
	if err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	n, closeEtcd, err := newProcessNode(f.Cluster, f.Etcd, f.Identity, id, f.SnapshotPath, log, reg)
	if err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	defer closeEtcd()
	cfg.SVIDs, cfg.Bundles, cfg.Snapshots, cfg.Registry = id.svids, n.Bundles, n.Cache, n.Registrar
	cfg.Logger, cfg.Metrics, cfg.TrustMetrics = log, reg, id.metrics
	var resolver *dns.Server
	if t := f.Transparent; t != nil {
		resolver, err = dns.New(dns.Config{Addr: t.DNS, Services: n.Cache, Mark: capture.DefaultMark, Logger: log, Metrics: reg})
		if err != nil {
			return fmt.Errorf("proxy: %w", err)
		}
		cfg.Transparent = &proxy.Transparent{ListenAddr: t.Listen, Services: resolver.VIPs()}
		cfg.Mark = capture.DefaultMark
	}
	p, err := proxy.New(cfg)
	if err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	g, ctx := errgroup.WithContext(ctx)
	if resolver != nil {
		g.Go(func() error { return resolver.Run(ctx) })
	}
	g.Go(func() error { return id.run(ctx) })
	g.Go(func() error { return n.Run(ctx) })
	g.Go(func() error {
		return afterSync(ctx, n, log, func(ctx context.Context) error { return id.runWhenReady(ctx, want, log, p.Run) })
	})
	if f.Admin.Listen != "" {
		g.Go(func() error { return serveAdmin(ctx, f.Admin.Listen, reg, log) })
	}
	return ignoreCanceled(g.Wait())
}

// serveAdmin serves /metrics and /healthz on addr until ctx ends.
func serveAdmin(ctx context.Context, addr string, reg *prometheus.Registry, log *slog.Logger) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	log.Info("admin server", "addr", ln.Addr().String())
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("admin: %w", err)
	}
	return ctx.Err()
}
