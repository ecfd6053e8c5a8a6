package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/quic-go/quic-go"
	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/sync/errgroup"

	"github.com/strait-mesh/strait/federation"
	"github.com/strait-mesh/strait/gateway"
	"github.com/strait-mesh/strait/internal/cmdutil"
	"github.com/strait-mesh/strait/trust"
)

// gatewayFile is the config file of `strait gateway`.
type gatewayFile struct {
	// Cluster and ID name the gateway. Required.
	Cluster string `json:"cluster"`
	ID      string `json:"id"`
	// Region and Zone locate it, for locality-aware routing.
	Region string `json:"region,omitempty"`
	Zone   string `json:"zone,omitempty"`
	// Etcd says how to reach the control plane.
	Etcd cmdutil.EtcdFile `json:"etcd"`
	// Identity says where SVIDs come from.
	Identity cmdutil.IdentityFile `json:"identity"`
	// Ingress is the QUIC listener (UDP) peers dial; Egress the TCP
	// listener of the cluster's proxies; Admin the HTTP admin server.
	Ingress cmdutil.ListenFile `json:"ingress"`
	Egress  cmdutil.ListenFile `json:"egress"`
	Admin   cmdutil.ListenFile `json:"admin"`
	// SnapshotPath keeps the last federation snapshot for static stability.
	SnapshotPath string `json:"snapshotPath,omitempty"`
	// StatelessResetKey (64 hex characters) lets a restarted gateway reset
	// its peers' stale connections at once. Share it among the replicas
	// behind one address.
	StatelessResetKey string `json:"statelessResetKey,omitempty"`
	// DrainTimeout bounds the drain on SIGTERM. Zero means 30s; the live
	// configuration in etcd overrides it.
	DrainTimeout cmdutil.Duration `json:"drainTimeout,omitempty"`
	// LogLevel is debug, info, warn or error. Zero means info.
	LogLevel string `json:"logLevel,omitempty"`
	// Pprof serves the Go profiles under /debug/pprof/ on the admin server
	// (the --pprof flag sets it too). Zero means off.
	Pprof bool `json:"pprof,omitempty"`
	// EndpointCIDRs are the ranges (CIDR) the ingress may dial for the
	// cluster's endpoints while the live configuration in etcd lists none.
	// Zero means any address but loopback, link-local, multicast and
	// unspecified ones; list 127.0.0.0/8 to reach endpoints on loopback.
	EndpointCIDRs []string `json:"endpointCIDRs,omitempty"`
	// ConnsPerRemoteGateway is the number of QUIC connections kept to each
	// remote gateway (new streams go to the least loaded). Zero means
	// GOMAXPROCS, at most 4.
	ConnsPerRemoteGateway int `json:"connsPerRemoteGateway,omitempty"`
}

func newGatewayCmd() *cobra.Command {
	var (
		path, kubeconfig string
		pprof            bool
	)
	cmd := &cobra.Command{
		Use:   "gateway --config gateway.yaml",
		Short: "Run an east-west gateway of a cluster",
		Long: `Run an east-west gateway: a QUIC ingress for the gateways of other clusters,
an egress for this cluster's proxies (routing by the SNI of their inner
ClientHello), and an admin server with /metrics, /healthz and /readyz.

The gateway registers itself in etcd under a lease, watches the federation
into a local snapshot (persisted to snapshotPath so that it can start and
route while etcd is down), and applies the live configuration kept in etcd.
SIGTERM drains it: it withdraws its record, refuses new streams with the
draining code so that callers retry elsewhere, and lets open streams finish.

With --kubeconfig (or inside a Kubernetes pod) the gateway also runs the
Multi-Cluster Services controller of its cluster: ServiceExports become
exports in etcd, and every global service gets a ServiceImport and derived
Service and EndpointSlices pointing at the gateway's egress.`,
		Example: `  strait gateway --config /etc/strait/gateway.yaml

  # gateway.yaml
  cluster: east
  id: gw-1
  region: us-east
  etcd: {endpoints: ["http://10.0.0.10:2379"]}
  identity: {trustDomain: east.example.org, caDir: /var/lib/strait/ca}
  ingress: {listen: "0.0.0.0:15443", advertise: "203.0.113.7:15443"}
  egress: {listen: "0.0.0.0:15444", advertise: "10.0.1.5:15444"}
  admin: {listen: "127.0.0.1:15021"}
  snapshotPath: /var/lib/strait/gw-1.snapshot.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var f gatewayFile
			if err := cmdutil.ReadFile(path, &f); err != nil {
				return fmt.Errorf("gateway: %w", err)
			}
			f.Pprof = f.Pprof || pprof
			return runGateway(cmd, f, kubeconfig)
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "", "gateway config file (YAML or JSON)")
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", "", "run the Kubernetes MCS controller (ServiceExport -> export, global services -> ServiceImport) with this kubeconfig; in a pod it runs with the in-cluster config")
	cmd.Flags().BoolVar(&pprof, "pprof", false, "serve the Go profiles under /debug/pprof/ on the admin server")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}

func runGateway(cmd *cobra.Command, f gatewayFile, kubeconfig string) error {
	level, err := cmdutil.ParseLevel(or(f.LogLevel, "info"))
	if err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("gateway_id", f.ID)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	gatewayID := func(td spiffeid.TrustDomain) (spiffeid.ID, error) { return trust.GatewayID(td, f.Cluster) }
	id, err := cmdutil.NewIdentity(f.Identity, gatewayID, log, reg)
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	want, err := gatewayID(id.TrustDomain)
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	n, closeEtcd, err := cmdutil.NewNode(f.Cluster, f.Etcd, f.Identity, id, f.SnapshotPath, log, reg)
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	defer closeEtcd()
	resetKey, err := parseResetKey(f.StatelessResetKey)
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	cidrs, err := parsePrefixes(f.EndpointCIDRs)
	if err != nil {
		return fmt.Errorf("gateway: endpointCIDRs: %w", err)
	}
	gw, err := gateway.New(gateway.Config{
		Cluster: f.Cluster, ID: f.ID, TrustDomain: id.TrustDomain, Region: f.Region, Zone: f.Zone,
		IngressListenAddr: f.Ingress.Listen, IngressAdvertiseAddr: f.Ingress.Advertise,
		EgressListenAddr: f.Egress.Listen, EgressAdvertiseAddr: f.Egress.Advertise,
		AdminListenAddr: f.Admin.Listen,
		SVIDs:           id.SVIDs, Bundles: n.Bundles, Snapshots: n.Cache, Registry: n.Registrar,
		Keyspace: f.Etcd.Keyspace(), Logger: log, Metrics: reg, Gatherer: reg, TrustMetrics: id.Metrics,
		StatelessResetKey: resetKey, DrainTimeout: time.Duration(f.DrainTimeout), Version: version, Pprof: f.Pprof,
		EndpointCIDRs: cidrs, EtcdEndpoints: etcdEndpoints(f.Etcd),
		ConnsPerRemoteGateway: f.ConnsPerRemoteGateway,
	})
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	g, ctx := errgroup.WithContext(cmd.Context())
	g.Go(func() error { return id.Run(ctx) })
	g.Go(func() error { return n.Run(ctx) })
	g.Go(func() error {
		return cmdutil.AfterSync(ctx, n, log, func(ctx context.Context) error { return id.RunWhenReady(ctx, want, log, gw.Run) })
	})
	if kubeconfig != "" || os.Getenv("KUBERNETES_SERVICE_HOST") != "" {
		g.Go(func() error {
			return startKubeController(ctx, kubeconfig, f.Cluster, n.Store, n.Cache, n.Registrar, log, reg)
		})
	}
	g.Go(func() error {
		select {
		case <-ctx.Done():
		case <-gw.Ready():
			log.Info("gateway ready", "ingress", gw.IngressAddr().String(), "egress", gw.EgressAddr().String(), "admin", gw.AdminAddr().String())
		}
		return nil
	})
	return cmdutil.IgnoreCanceled(g.Wait())
}

func parseResetKey(s string) (*quic.StatelessResetKey, error) {
	if s == "" {
		return nil, nil
	}
	b, err := hex.DecodeString(s)
	var key quic.StatelessResetKey
	if err != nil || len(b) != len(key) {
		return nil, fmt.Errorf("statelessResetKey must be %d hex characters", 2*len(key))
	}
	copy(key[:], b)
	return &key, nil
}

func parsePrefixes(cidrs []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, c := range cidrs {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// etcdEndpoints are the etcd endpoints a process dials.
func etcdEndpoints(ef cmdutil.EtcdFile) []string {
	if len(ef.Endpoints) == 0 {
		return []string{federation.DefaultEndpoint}
	}
	return ef.Endpoints
}
