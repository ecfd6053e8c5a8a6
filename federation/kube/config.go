package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/hashicorp/go-multierror"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	mcsclient "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned"

	"github.com/strait-mesh/strait/federation"
)

// Defaults of Config.
const (
	// DefaultResyncPeriod is how often the controller reconciles everything
	// even when nothing changed.
	DefaultResyncPeriod = 30 * time.Second
	// DefaultRetryDelay is the first delay before a failed reconciliation is
	// retried; it doubles up to DefaultResyncPeriod.
	DefaultRetryDelay = 500 * time.Millisecond
)

// Config configures a Controller. Zero values mean the documented default.
type Config struct {
	// Cluster is the name of the cluster the controller runs in, as the
	// federation knows it. Required.
	Cluster string
	// RESTConfig reaches the cluster's API server. Required unless both
	// Kube and MCS are set.
	RESTConfig *rest.Config
	// Kube is the client of the core APIs. Zero means one built from
	// RESTConfig.
	Kube kubernetes.Interface
	// MCS is the client of the Multi-Cluster Services API. Zero means one
	// built from RESTConfig.
	MCS mcsclient.Interface
	// Store writes the cluster's exports. Required.
	Store *federation.Store
	// Snapshots is the federation watch cache. Required. When it has a
	// Synced() <-chan struct{} method (the federation.Cache does), the
	// controller waits for it before its first reconciliation, so that an
	// empty snapshot at start-up never deletes every import.
	Snapshots federation.SnapshotSource
	// Registry is reserved for mirroring EndpointSlices into Endpoint
	// records; the controller does not use it today (proxies register
	// their own endpoints). Optional.
	Registry federation.Registry
	// GatewayAddress returns the host:port of this cluster's gateway egress
	// that derived EndpointSlices point at; a host name is resolved. Zero
	// (or a function returning "") means the egress addresses of the
	// cluster's live gateways in the snapshot.
	GatewayAddress func() string
	// LookupIP resolves a gateway host name. Zero means net.DefaultResolver
	// (IPv4 and IPv6).
	LookupIP func(ctx context.Context, host string) ([]netip.Addr, error)
	// ResyncPeriod is how often everything is reconciled without a change.
	// Zero means DefaultResyncPeriod.
	ResyncPeriod time.Duration
	// RetryDelay is the first delay before a failed reconciliation is
	// retried. Zero means DefaultRetryDelay.
	RetryDelay time.Duration
	// LeaderElection, when set, makes the controllers of a cluster's
	// gateway replicas elect one leader with a Lease, so that one of them
	// reconciles at a time. Zero means every controller reconciles (the
	// writes are idempotent, but replicas then race on each change).
	LeaderElection *LeaderElection
	// Logger receives the controller's logs. Zero means slog.Default().
	Logger *slog.Logger
	// Metrics registers the strait_kube_* metrics. Zero means none.
	Metrics prometheus.Registerer
}

// Defaults of LeaderElection.
const (
	DefaultLeaseDuration = 15 * time.Second
	DefaultRenewDeadline = 10 * time.Second
	DefaultRetryPeriod   = 2 * time.Second
)

// LeaderElection configures the Lease the controllers of one cluster
// compete for.
type LeaderElection struct {
	// Namespace and Name locate the Lease. Required.
	Namespace, Name string
	// Identity names this controller among the candidates, e.g. its pod
	// name. Required.
	Identity string
	// LeaseDuration, RenewDeadline and RetryPeriod are those of client-go's
	// leader election. Zero means DefaultLeaseDuration,
	// DefaultRenewDeadline and DefaultRetryPeriod.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
}

// populate fills in defaults and builds missing clients.
func (c *Config) populate() error {
	if c.ResyncPeriod == 0 {
		c.ResyncPeriod = DefaultResyncPeriod
	}
	if c.RetryDelay == 0 {
		c.RetryDelay = DefaultRetryDelay
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if le := c.LeaderElection; le != nil {
		if le.LeaseDuration == 0 {
			le.LeaseDuration = DefaultLeaseDuration
		}
		if le.RenewDeadline == 0 {
			le.RenewDeadline = DefaultRenewDeadline
		}
		if le.RetryPeriod == 0 {
			le.RetryPeriod = DefaultRetryPeriod
		}
	}
	if c.LookupIP == nil {
		c.LookupIP = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		}
	}
	if c.RESTConfig == nil {
		return nil
	}
	var err error
	if c.Kube == nil {
		if c.Kube, err = kubernetes.NewForConfig(c.RESTConfig); err != nil {
			return fmt.Errorf("kube: client: %w", err)
		}
	}
	if c.MCS == nil {
		if c.MCS, err = mcsclient.NewForConfig(c.RESTConfig); err != nil {
			return fmt.Errorf("kube: MCS client: %w", err)
		}
	}
	return nil
}

// validate returns every problem of the configuration at once.
func (c *Config) validate() error {
	var errs *multierror.Error
	if c.Cluster == "" {
		errs = multierror.Append(errs, errors.New("cluster is required"))
	} else if err := federation.ValidateLabel(c.Cluster); err != nil {
		errs = multierror.Append(errs, fmt.Errorf("cluster: %w", err))
	}
	if c.Kube == nil || c.MCS == nil {
		errs = multierror.Append(errs, errors.New("a REST config, or both Kube and MCS clients, are required"))
	}
	if c.Store == nil {
		errs = multierror.Append(errs, errors.New("store is required"))
	}
	if c.Snapshots == nil {
		errs = multierror.Append(errs, errors.New("snapshot source is required"))
	}
	if c.ResyncPeriod < 0 {
		errs = multierror.Append(errs, fmt.Errorf("resync period %v is negative", c.ResyncPeriod))
	}
	if c.RetryDelay < 0 {
		errs = multierror.Append(errs, fmt.Errorf("retry delay %v is negative", c.RetryDelay))
	}
	if le := c.LeaderElection; le != nil {
		if le.Namespace == "" || le.Name == "" || le.Identity == "" {
			errs = multierror.Append(errs, errors.New("leader election needs a namespace, a name and an identity"))
		}
		if le.RenewDeadline >= le.LeaseDuration || le.RetryPeriod >= le.RenewDeadline {
			errs = multierror.Append(errs, errors.New("leader election needs retry period < renew deadline < lease duration"))
		}
	}
	if err := errs.ErrorOrNil(); err != nil {
		return fmt.Errorf("kube: config: %w", err)
	}
	return nil
}
