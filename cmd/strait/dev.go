package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/strait-mesh/strait/internal/cmdutil"
	"github.com/strait-mesh/strait/internal/devcluster"
)

// devStopTimeout bounds how long Ctrl-C may take.
const devStopTimeout = 5 * time.Second

func newDevCmd() *cobra.Command {
	var (
		dataDir  string
		etcdURL  string
		upstream string
		logLevel string
		pprof    bool
	)
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a whole two-cluster federation in one process",
		Long: `Run Strait's embedded default: one process with an embedded etcd and two
clusters, east and west, on loopback. Each cluster is its own SPIFFE trust
domain with a built-in CA whose bundle is published to etcd, and runs one
gateway. West serves the demo HTTP service hello.default (exported to east)
behind its proxy; east runs a client proxy with an upstream listener for it.

The printed curl command goes east proxy -> east gateway -> QUIC -> west
gateway -> west proxy -> demo service, with mTLS end to end between the two
proxies. Ctrl-C stops everything.`,
		Example: `  strait dev
  strait dev --data-dir /tmp/strait-dev --log-level info`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			level, err := cmdutil.ParseLevel(logLevel)
			if err != nil {
				return err
			}
			if dataDir == "" {
				tmp, err := os.MkdirTemp("", "strait-dev-")
				if err != nil {
					return fmt.Errorf("dev: %w", err)
				}
				defer os.RemoveAll(tmp)
				dataDir = tmp
			}
			cfg := devcluster.DefaultConfig(dataDir)
			cfg.EtcdClientURL = etcdURL
			cfg.Pprof = pprof
			cfg.Clusters[0].Client.Upstreams[0].ListenAddr = upstream
			if level <= slog.LevelInfo {
				cfg.EtcdLogLevel = "warn"
			}
			cfg.Logger = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
			return runDev(cmd.Context(), cmd.OutOrStdout(), cfg)
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "directory for etcd data, CAs and snapshots (default: a temporary directory, removed on exit)")
	cmd.Flags().StringVar(&etcdURL, "etcd-listen", "http://127.0.0.1:2379", "client URL of the embedded etcd")
	cmd.Flags().StringVar(&upstream, "upstream", devcluster.DefaultHelloUpstream, "listen address of east's upstream for hello.default")
	cmd.Flags().StringVar(&logLevel, "log-level", "warn", "log level: debug, info, warn or error")
	cmd.Flags().BoolVar(&pprof, "pprof", false, "serve the Go profiles under /debug/pprof/ on each gateway's admin port")
	return cmd
}

// runDev runs the federation until ctx is cancelled, printing what runs
// once it is ready.
func runDev(ctx context.Context, out io.Writer, cfg devcluster.Config) error {
	f, err := devcluster.New(cfg)
	if err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- f.Run(runCtx) }()
	select {
	case err := <-done:
		return fmt.Errorf("dev: %w", err)
	case <-ctx.Done():
		cancel()
		return waitStopped(done)
	case <-f.Ready():
	}
	printDev(out, f, cfg)
	select {
	case err := <-done:
		return fmt.Errorf("dev: stopped: %w", err)
	case <-ctx.Done():
	}
	fmt.Fprintln(out, "stopping...")
	cancel()
	return waitStopped(done)
}

func waitStopped(done <-chan error) error {
	select {
	case err := <-done:
		return err
	case <-time.After(devStopTimeout):
		return fmt.Errorf("dev: not stopped after %s", devStopTimeout)
	}
}

func printDev(out io.Writer, f *devcluster.Federation, cfg devcluster.Config) {
	var b strings.Builder
	fmt.Fprintf(&b, "Strait dev: two clusters on loopback (data in %s)\n", cfg.DataDir)
	fmt.Fprintf(&b, "  etcd     %s\n", strings.Join(f.EtcdEndpoints(), ","))
	for _, spec := range cfg.Clusters {
		c := f.Cluster(spec.Name)
		gw := c.Gateway
		fmt.Fprintf(&b, "  %-8s trust domain %s; gateway ingress %s/udp, egress %s, admin http://%s/metrics\n",
			spec.Name, c.TrustDomain.Name(), gw.IngressAddr(), gw.EgressAddr(), gw.AdminAddr())
		for _, s := range spec.Services {
			if s.Export {
				fmt.Fprintf(&b, "  %-8s exports %s.%s port %d to %s\n", spec.Name, s.Name, s.Namespace, s.Port, strings.Join(s.Consumers, ","))
			}
		}
		if spec.Client != nil {
			for _, u := range spec.Client.Upstreams {
				fmt.Fprintf(&b, "  %-8s client upstream %s.%s:%d on %s\n", spec.Name, u.Service, u.Namespace, u.Port, f.UpstreamAddr(spec.Name, u.Service))
			}
		}
	}
	b.WriteString("Try it (east -> west through both gateways):\n")
	fmt.Fprintf(&b, "curl http://%s/\n", f.UpstreamAddr("east", "hello"))
	if c := f.Cluster(cfg.Clusters[0].Name); c != nil {
		fmt.Fprintf(&b, "Topology (live): http://%s/topology\n", c.Gateway.AdminAddr())
	}
	b.WriteString("Inspect it: strait status, strait check, strait gateways; Ctrl-C stops everything.\n")
	fmt.Fprint(out, b.String())
}
