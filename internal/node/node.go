package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hashicorp/go-multierror"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/sync/errgroup"

	"github.com/strait-mesh/strait/federation"
	clientv3 "github.com/strait-mesh/strait/internal/etcdclient"
	"github.com/strait-mesh/strait/trust"
)

// Config configures a Node. Zero values mean the documented default.
type Config struct {
	// Cluster is the node's cluster. Required.
	Cluster string
	// TrustDomain is the cluster's trust domain. Required.
	TrustDomain spiffeid.TrustDomain
	// Etcd is the etcd client. Required.
	Etcd *clientv3.Client
	// Keyspace is the federation keyspace. Zero means the default prefix.
	Keyspace federation.Keyspace
	// SnapshotPath persists the federation snapshot for static stability.
	// Zero disables persistence.
	SnapshotPath string
	// LeaseTTL is the TTL of the node's registrations. Zero means
	// federation.DefaultLeaseTTL.
	LeaseTTL time.Duration
	// LocalBundle serves the cluster's own bundle (the CA, or SPIRE). Required.
	LocalBundle x509bundle.Source
	// CA, when set, is the cluster's built-in CA: the node publishes its
	// bundle to etcd, now and after every root change.
	CA *trust.CA
	// Federates limits the trust domains whose bundles are trusted. Zero
	// means every trust domain that publishes a bundle.
	Federates []spiffeid.TrustDomain
	// Logger receives the node's logs. Nil means slog.Default().
	Logger *slog.Logger
	// Metrics registers the cache's and trust metrics. Nil means none.
	Metrics prometheus.Registerer
	// TrustMetrics, when set, are the trust metrics to use instead of
	// registering new ones on Metrics (a registry holds them only once).
	TrustMetrics *trust.Metrics
}

func (c *Config) validate() error {
	var errs *multierror.Error
	if c.Cluster == "" {
		errs = multierror.Append(errs, errors.New("cluster is required"))
	}
	if c.TrustDomain.IsZero() {
		errs = multierror.Append(errs, errors.New("trust domain is required"))
	}
	if c.Etcd == nil {
		errs = multierror.Append(errs, errors.New("etcd client is required"))
	}
	if c.LocalBundle == nil {
		errs = multierror.Append(errs, errors.New("local bundle source is required"))
	}
	if err := errs.ErrorOrNil(); err != nil {
		return fmt.Errorf("node: config: %w", err)
	}
	return nil
}

// Node is the control-plane side of one Strait process.
type Node struct {
	// Cache is the federation watch cache: the process routes from it.
	Cache *federation.Cache
	// Registrar keeps the process' leased records.
	Registrar *federation.Registrar
	// Bundles holds one bundle per federated trust domain.
	Bundles *trust.BundleStore
	// Store writes durable records (exports, config, bundles).
	Store *federation.Store

	cfg Config
	log *slog.Logger
}

// New builds a node; Run starts it.
func New(cfg Config) (*Node, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("cluster", cfg.Cluster)
	cache, err := federation.NewCache(federation.CacheConfig{
		Sources:      []federation.Source{{Name: "etcd", Client: cfg.Etcd}},
		Keyspace:     cfg.Keyspace,
		SnapshotPath: cfg.SnapshotPath,
		// GatewayStaleAfter stays off: the heartbeat check withdrew every
		// gateway during a full etcd outage in the failover suite (scenario
		// 5), which static stability forbids. Lease expiry is the signal.
		Logger:  log,
		Metrics: cfg.Metrics,
	})
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	reg, err := federation.NewRegistrar(federation.RegistrarConfig{
		Client: cfg.Etcd, Keyspace: cfg.Keyspace, TTL: cfg.LeaseTTL, Logger: log,
	})
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	tm := cfg.TrustMetrics
	if tm == nil && cfg.Metrics != nil {
		if tm, err = trust.NewMetrics(cfg.Metrics); err != nil {
			return nil, fmt.Errorf("node: %w", err)
		}
	}
	bundles, err := trust.NewBundleStore(trust.BundleStoreConfig{
		TrustDomain: cfg.TrustDomain, Local: cfg.LocalBundle, Federates: cfg.Federates,
		Logger: log, Metrics: tm, KeepDeleted: keepDeletedBundle,
	})
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	return &Node{
		Cache: cache, Registrar: reg, Bundles: bundles,
		Store: federation.NewStore(cfg.Etcd, cfg.Keyspace),
		cfg:   cfg, log: log,
	}, nil
}

// Run runs the cache, the registrar, the bundle sync and (with a CA) the
// bundle publication until ctx is cancelled; it returns ctx.Err() then. The
// registrar revokes its lease on the way out, withdrawing the records.
func (n *Node) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return n.Cache.Run(ctx) })
	g.Go(func() error { return n.Registrar.Run(ctx) })
	g.Go(func() error { return n.syncBundles(ctx) })
	if n.cfg.CA != nil {
		g.Go(func() error { return n.publishBundle(ctx) })
	}
	return g.Wait()
}

// syncBundles applies the bundles of every snapshot to the bundle store.
func (n *Node) syncBundles(ctx context.Context) error {
	for {
		changed := n.Cache.Changed()
		if err := n.Bundles.Sync(n.Cache.Snapshot().Bundles()); err != nil {
			// Rejected records (stale, not federated, invalid) are logged
			// and counted by the store; the others are applied.
			n.log.Debug("bundle sync", "error", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}

// keepDeletedBundle is how long a federated bundle whose key was deleted
// stays trusted: its publisher restores the key within about a second
// (trust.DefaultRepairInterval), and handshakes in between must not fail; a
// trust domain that is really gone is withdrawn after it.
const keepDeletedBundle = 10 * time.Second

// publishInterval is how often the published bundle is re-checked, which
// also bounds the retry after a failed publication.
const publishInterval = 5 * time.Second

// publishBundle keeps the CA's bundle published in etcd, with the next
// sequence number whenever it changes, once the cache has synced.
func (n *Node) publishBundle(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-n.Cache.Synced():
	}
	pub, err := trust.NewLocalBundlePublisher(trust.LocalBundlePublisherConfig{
		TrustDomain: n.cfg.TrustDomain,
		Source:      n.cfg.CA,
		Publisher:   n.Store,
		// The key as it is, not the cache (which keeps the last valid
		// record): a deletion or junk over the bundle is repaired at once.
		Key:      n.Store.BundleKey(n.cfg.TrustDomain.Name()),
		Interval: publishInterval,
		Logger:   n.log,
	})
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	return pub.Run(ctx)
}
