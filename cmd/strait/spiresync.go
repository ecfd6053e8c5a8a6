package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/hashicorp/go-multierror"
	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/strait-mesh/strait/federation"
	"github.com/strait-mesh/strait/internal/cmdutil"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
	"github.com/strait-mesh/strait/trust/spiresync"
)

// spireSyncFlags are the flags of `strait spire-sync` besides etcd's.
type spireSyncFlags struct {
	serverSocket string
	trustDomain  string
	federates    []string
	interval     time.Duration
	logLevel     string
}

func newSPIRESyncCmd() *cobra.Command {
	f := &spireSyncFlags{}
	cmd := &cobra.Command{
		Use:   "spire-sync --server-socket /run/spire/server/api.sock --trust-domain east.example",
		Short: "Move trust bundles between a SPIRE server and etcd",
		Long: `Run the SPIRE bundle sync loop of one trust domain until interrupted. Run
one beside the SPIRE server of every trust domain that joins the federation.

At start and then every --interval it
  - reads the SPIRE server's own bundle (bundle API GetBundle) and publishes
    it in etcd at trust/<trust-domain> when its X.509 authorities changed,
    with a sequence number above the one stored;
  - reads the other trust domains' bundles from etcd, validates them (CA
    authorities only, sequence numbers never going backwards, --federates)
    and writes them into SPIRE as federated bundles
    (BatchSetFederatedBundle).

Strait's gateways and proxies that take their SVIDs from a SPIRE agent trust
the bundles published in etcd; SPIRE workloads trust a federated bundle once
their registration entry federates with its trust domain
(spire-server entry update -federatesWith spiffe://<other-domain>).
Federated bundles are never deleted from SPIRE by this command.

The server socket is the SPIRE server's API socket (socket_path in its
config), where SPIRE treats local callers as administrators: run this
command on the server's host with access to that socket. A failed sync is
logged and retried at the next interval; the command exits only when
interrupted (SIGINT, SIGTERM) or when its flags are wrong.`,
		Example: `  strait spire-sync --server-socket /run/spire/server/api.sock \
    --trust-domain east.example --federates west.example,central.example \
    --etcd http://10.0.0.10:2379 --interval 10s`,
		Args: cobra.NoArgs,
	}
	ef := addEtcdFlags(cmd)
	fs := cmd.Flags()
	fs.StringVar(&f.serverSocket, "server-socket", "",
		"SPIRE server API socket: a path or unix:///path (required)")
	fs.StringVar(&f.trustDomain, "trust-domain", "", "the SPIRE server's trust domain (required)")
	fs.StringSliceVar(&f.federates, "federates", nil,
		"trust domains whose bundles are written into SPIRE, comma-separated (default: every trust domain in etcd)")
	fs.DurationVar(&f.interval, "interval", spiresync.DefaultInterval, "time between two syncs")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	_ = cmd.MarkFlagRequired("server-socket")
	_ = cmd.MarkFlagRequired("trust-domain")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		return runSPIRESync(cmd.Context(), cmd.ErrOrStderr(), f, ef)
	}
	return cmd
}

// spireSyncSettings are the parsed flags.
type spireSyncSettings struct {
	target    string
	td        spiffeid.TrustDomain
	federates []spiffeid.TrustDomain
	level     slog.Level
}

// parse validates the flags, reporting every problem at once.
func (f *spireSyncFlags) parse() (spireSyncSettings, error) {
	var (
		s    spireSyncSettings
		errs *multierror.Error
		err  error
	)
	s.target, err = serverSocketTarget(f.serverSocket)
	if err != nil {
		errs = multierror.Append(errs, err)
	}
	if s.td, err = spiffeid.TrustDomainFromString(f.trustDomain); err != nil {
		errs = multierror.Append(errs, fmt.Errorf("--trust-domain %q: %w", f.trustDomain, err))
	}
	for _, name := range f.federates {
		td, err := spiffeid.TrustDomainFromString(name)
		if err != nil {
			errs = multierror.Append(errs, fmt.Errorf("--federates %q: %w", name, err))
			continue
		}
		s.federates = append(s.federates, td)
	}
	if f.interval <= 0 {
		errs = multierror.Append(errs, fmt.Errorf("--interval %s: must be positive", f.interval))
	}
	if s.level, err = cmdutil.ParseLevel(f.logLevel); err != nil {
		errs = multierror.Append(errs, err)
	}
	if err := errs.ErrorOrNil(); err != nil {
		return s, fmt.Errorf("spire-sync: %w", err)
	}
	return s, nil
}

// serverSocketTarget turns --server-socket into a gRPC target.
func serverSocketTarget(s string) (string, error) {
	path := strings.TrimPrefix(s, "unix://")
	if path == "" || !strings.HasPrefix(path, "/") {
		return "", fmt.Errorf("--server-socket %q: want an absolute path or unix:///path", s)
	}
	return "unix://" + path, nil
}

// runSPIRESync runs the sync loop until ctx is cancelled, logging JSON lines
// to logOut.
func runSPIRESync(ctx context.Context, logOut io.Writer, f *spireSyncFlags, ef *etcdFlags) error {
	s, err := f.parse()
	if err != nil {
		return err
	}
	// The Syncer names the trust domain of each bundle it moves.
	log := slog.New(slog.NewJSONHandler(logOut, &slog.HandlerOptions{Level: s.level}))
	conn, err := grpc.NewClient(s.target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("spire-sync: SPIRE server %s: %w", s.target, err)
	}
	defer conn.Close()
	cli, err := ef.client(ctx)
	if err != nil {
		return fmt.Errorf("spire-sync: %w", err)
	}
	defer cli.Close()
	ks := ef.keyspace()
	syncer, err := spiresync.New(spiresync.Config{
		Conn:        conn,
		TrustDomain: s.td,
		Publisher:   federation.NewStore(cli, ks),
		Lister:      bundleLister(cli, ks, log),
		Federates:   s.federates,
		Interval:    f.interval,
		Logger:      log,
	})
	if err != nil {
		return fmt.Errorf("spire-sync: %w", err)
	}
	log.Info("spire-sync started", "trust_domain", s.td.Name(), "server_socket", s.target, "etcd", strings.Join(ef.endpoints, ","),
		"interval", f.interval.String(), "federates", f.federates)
	return cmdutil.IgnoreCanceled(syncer.Run(ctx))
}

// bundleLister reads the bundle records under trust/ (one range read, not the
// whole keyspace). Records that fail to decode are logged and skipped; the
// Syncer validates the others.
func bundleLister(cli *clientv3.Client, ks federation.Keyspace, log *slog.Logger) spiresync.BundleListerFunc {
	prefix := ks.Bundle("")
	return func(ctx context.Context) ([]*straitv1.TrustBundle, error) {
		resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
		if err != nil {
			return nil, fmt.Errorf("etcd: list %s: %w", prefix, err)
		}
		out := make([]*straitv1.TrustBundle, 0, len(resp.Kvs))
		for _, kv := range resp.Kvs {
			rec, err := federation.DecodeRecord(ks, string(kv.Key), kv.Value)
			if err != nil {
				log.Warn("skipping invalid bundle record", "key", string(kv.Key), "error", err)
				continue
			}
			b, ok := rec.Message.(*straitv1.TrustBundle)
			if !ok {
				log.Warn("skipping record that is not a bundle", "key", string(kv.Key))
				continue
			}
			out = append(out, b)
		}
		return out, nil
	}
}
