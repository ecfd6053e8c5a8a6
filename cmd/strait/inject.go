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
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"

	"github.com/strait-mesh/strait/federation/kube/inject"
	"github.com/strait-mesh/strait/internal/admin"
	"github.com/strait-mesh/strait/internal/cmdutil"
)

// The injector is a command of its own, not part of `strait gateway`: the
// API server calls it for every pod it injects (failurePolicy Fail), so it
// must answer while gateways drain, restart or wait for etcd, and it needs
// neither etcd, nor an SVID, nor RBAC.
func newInjectCmd() *cobra.Command {
	var (
		cfg                 inject.Config
		srv                 inject.ServerConfig
		adminAddr, logLevel string
		pullPolicy          string
	)
	cmd := &cobra.Command{
		Use:   "inject --cert tls.crt --key tls.key",
		Short: "Serve the sidecar injection webhook (Kubernetes)",
		Long: `Serve the mutating admission webhook that adds the Strait proxy sidecar
(strait-proxy) and its init container (strait-init) to pods:
every pod of a namespace labelled strait.io/inject=enabled unless annotated
strait.io/inject: "false", and pods annotated strait.io/inject: "true" in
other namespaces. deploy/base/injector.yaml registers it. An already
injected pod (one with a strait-proxy container) is left alone.

The sidecar reads its config file from the ConfigMap strait-proxy of the
pod's namespace (or the one the annotation strait.io/proxy-config names);
@POD_IP@, @POD_NAME@ and @ETCD_ENDPOINT@ in it are filled from the
sidecar's environment. The init container hands the built-in CA's hostPath
directory to the proxy's user and, unless the pod is annotated
strait.io/capture: "false", installs the capture rules (nftables over
netlink, NET_ADMIN only) that send the pod's outbound TCP and DNS to its
proxy.

The webhook serves HTTPS with --cert and --key (read again when they
change); the admin server serves /metrics (strait_inject_*) and /healthz.`,
		Example: `  strait inject --cert /etc/strait/injector-tls/tls.crt --key /etc/strait/injector-tls/tls.key --image strait:v0.1.0`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			level, err := cmdutil.ParseLevel(logLevel)
			if err != nil {
				return err
			}
			log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			reg := prometheus.NewRegistry()
			cfg.Logger, cfg.Metrics, cfg.PullPolicy = log, reg, corev1.PullPolicy(pullPolicy)
			inj, err := inject.New(cfg)
			if err != nil {
				return err
			}
			srv.Injector = inj
			s, err := inject.NewServer(srv)
			if err != nil {
				return err
			}
			g, ctx := errgroup.WithContext(cmd.Context())
			g.Go(func() error { return s.Run(ctx) })
			if adminAddr != "" {
				g.Go(func() error { return serveInjectAdmin(ctx, adminAddr, reg) })
			}
			return cmdutil.IgnoreCanceled(g.Wait())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&srv.Addr, "listen", ":15017", "HTTPS address of the webhook")
	fl.StringVar(&srv.CertFile, "cert", "", "serving certificate (PEM), whose CA the MutatingWebhookConfiguration's caBundle holds")
	fl.StringVar(&srv.KeyFile, "key", "", "serving certificate's private key (PEM)")
	fl.StringVar(&adminAddr, "admin", ":15021", "HTTP address of /metrics and /healthz (empty: none)")
	fl.StringVar(&cfg.Image, "image", "strait:dev", "image of the injected containers (holds /usr/local/bin/strait-proxy)")
	fl.StringVar(&pullPolicy, "pull-policy", "IfNotPresent", "image pull policy of the injected containers")
	fl.StringVar(&cfg.CADir, "ca-dir", "/var/lib/strait/ca", `node directory of the built-in CA mounted into the sidecar ("-" for none, with SPIRE)`)
	fl.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	_ = cmd.MarkFlagRequired("cert")
	_ = cmd.MarkFlagRequired("key")
	return cmd
}

// serveInjectAdmin serves /metrics and /healthz on addr until ctx ends.
func serveInjectAdmin(ctx context.Context, addr string, reg *prometheus.Registry) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", admin.MetricsHandler(reg))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("inject: admin: %w", err)
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = hs.Shutdown(shutdown)
	}()
	if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("inject: admin: %w", err)
	}
	return ctx.Err()
}
