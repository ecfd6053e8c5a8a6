package proxycmd

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/sync/errgroup"

	"github.com/strait-mesh/strait/internal/admin"
	"github.com/strait-mesh/strait/internal/cmdutil"
	"github.com/strait-mesh/strait/proxy"
	"github.com/strait-mesh/strait/proxy/dns"
	"github.com/strait-mesh/strait/trust"
)

// Run runs the proxy process that f describes until ctx ends.
func Run(ctx context.Context, f File) error {
	applyRuntimeDefaults(f.Pprof)
	level, err := cmdutil.ParseLevel(cmp.Or(f.LogLevel, "info"))
	if err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("service", f.Service)
	cfg, err := f.Config()
	if err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	reg := prometheus.NewRegistry()
	ns, sa := cmp.Or(f.Namespace, proxy.DefaultNamespace), cmp.Or(f.ServiceAccount, f.Service)
	workloadID := func(td spiffeid.TrustDomain) (spiffeid.ID, error) {
		return trust.WorkloadID(td, ns, cmp.Or(sa, "default"))
	}
	id, err := cmdutil.NewIdentity(f.Identity, workloadID, log, reg)
	if err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	want, err := workloadID(id.TrustDomain)
	if err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	if t := f.Transparent; t != nil {
		net.DefaultResolver = tcpResolver(t.mark())
	}
	n, closeEtcd, err := cmdutil.NewNode(f.Cluster, f.Etcd, f.Identity, id, f.SnapshotPath, log, reg)
	if err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	defer closeEtcd()
	cfg.SVIDs, cfg.Bundles, cfg.Snapshots, cfg.Registry = id.SVIDs, n.Bundles, n.Cache, n.Registrar
	cfg.Logger, cfg.Metrics, cfg.TrustMetrics = log, reg, id.Metrics
	var resolver *dns.Server
	if t := f.Transparent; t != nil {
		resolver, err = dns.New(dns.Config{Addr: t.DNS, Services: n.Cache, Mark: t.mark(), Logger: log, Metrics: reg})
		if err != nil {
			return fmt.Errorf("proxy: %w", err)
		}
		cfg.Transparent = &proxy.Transparent{ListenAddr: t.Listen, Services: resolver.VIPs()}
		cfg.Mark = t.mark()
	}
	p, err := proxy.New(cfg)
	if err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	g, ctx := errgroup.WithContext(ctx)
	if resolver != nil {
		g.Go(func() error { return resolver.Run(ctx) })
	}
	g.Go(func() error { return id.Run(ctx) })
	g.Go(func() error { return n.Run(ctx) })
	g.Go(func() error {
		return cmdutil.AfterSync(ctx, n, log, func(ctx context.Context) error { return id.RunWhenReady(ctx, want, log, p.Run) })
	})
	if f.Admin.Listen != "" {
		g.Go(func() error { return serveAdmin(ctx, f.Admin.Listen, reg, f.Pprof, log) })
	}
	return cmdutil.IgnoreCanceled(g.Wait())
}

// serveAdmin serves /metrics (reg's metrics with the Go runtime and process
// metrics), /healthz and, with pprof, /debug/pprof/ on addr until ctx ends.
func serveAdmin(ctx context.Context, addr string, reg *prometheus.Registry, pprof bool, log *slog.Logger) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", admin.MetricsHandler(reg))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	if pprof {
		admin.HandlePprof(mux)
	}
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
