package check

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-multierror"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/strait-mesh/strait/federation"
)

// Status is the outcome of one check.
type Status string

// The statuses, from best to worst.
const (
	OK   Status = "ok"
	Warn Status = "warn"
	Fail Status = "fail"
)

// Categories of checks, in the order Run reports them.
const (
	CategoryEtcd     = "etcd"
	CategoryTrust    = "trust"
	CategoryGateways = "gateways"
	CategoryExports  = "exports"
	CategoryPath     = "path"
)

// Layers of a failed peer check.
const (
	LayerDNS      = "dns"
	LayerQUIC     = "quic"
	LayerIdentity = "identity"
	LayerStream   = "stream"
)

// Result is one check's outcome.
type Result struct {
	Category string `json:"category"`
	// Check names what was checked, e.g. "west/gw-0" or "east -> west".
	Check   string `json:"check"`
	Status  Status `json:"status"`
	Message string `json:"message"`
	// Hint says what to look at when Status is not ok.
	Hint string `json:"hint,omitempty"`
	// Layer is where a peer check failed (see the package doc).
	Layer string `json:"layer,omitempty"`
	// Cluster and Gateway name what the check is about, when it is one.
	Cluster string `json:"cluster,omitempty"`
	Gateway string `json:"gateway,omitempty"`
	// RTTSeconds is the measured handshake or probe time, when measured.
	RTTSeconds float64 `json:"rttSeconds,omitempty"`
}

// Report is every result of a run.
type Report struct {
	Revision int64    `json:"revision"`
	Results  []Result `json:"results"`
}

// Failed reports whether any check failed.
func (r *Report) Failed() bool {
	return slices.ContainsFunc(r.Results, func(x Result) bool { return x.Status == Fail })
}

// Count returns how many results have status s.
func (r *Report) Count(s Status) int {
	n := 0
	for _, x := range r.Results {
		if x.Status == s {
			n++
		}
	}
	return n
}

// Config is what Run checks and how. Zero values mean the documented
// default.
type Config struct {
	// Etcd is a client of the federation's etcd. Required.
	Etcd *clientv3.Client
	// Keyspace is the federation's keyspace. Zero means the default prefix.
	Keyspace federation.Keyspace
	// EtcdCertFile is the etcd client certificate, checked for expiry.
	// Zero means none.
	EtcdCertFile string
	// HandshakeTimeout bounds each QUIC handshake to a gateway. Zero means
	// 3s.
	HandshakeTimeout time.Duration
	// ProbeTimeout bounds each path probe. Zero means 10s.
	ProbeTimeout time.Duration
	// ExpiryWarning is how close to expiry a root or client certificate
	// warns. Zero means 7 days.
	ExpiryWarning time.Duration
	// HTTPClient reaches the gateways' admin ports. Zero means a client
	// without proxy.
	HTTPClient *http.Client
	// Now is the clock. Zero means time.Now.
	Now func() time.Time
	// Cluster, when set, checks from that cluster's point of view, as run
	// from one of its gateways' hosts or pods: the path probes and the
	// trust comparison start only from this cluster, and the cluster must
	// have gateway records. The etcd, bundle, handshake (from here to
	// every ingress, this cluster's included) and export checks are
	// unchanged. Zero means every cluster.
	Cluster string
	// Admin is the local gateway's admin address (host:port), which the
	// path probes and the trust comparison of Cluster then use instead of
	// the admin addresses its records advertise (which may not be
	// reachable, or be reachable only inside the pod). It requires
	// Cluster, and the gateway there must be one of Cluster's. Zero means
	// the records' admin addresses.
	Admin string
}

const (
	defaultHandshakeTimeout = 3 * time.Second
	defaultProbeTimeout     = 10 * time.Second
	defaultExpiryWarning    = 7 * 24 * time.Hour
)

func (c *Config) populate() {
	c.HandshakeTimeout = or(c.HandshakeTimeout, defaultHandshakeTimeout)
	c.ProbeTimeout = or(c.ProbeTimeout, defaultProbeTimeout)
	c.ExpiryWarning = or(c.ExpiryWarning, defaultExpiryWarning)
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Transport: &http.Transport{Proxy: nil}}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

func (c *Config) validate() error {
	var errs *multierror.Error
	if c.Etcd == nil {
		errs = multierror.Append(errs, errors.New("etcd client is required"))
	}
	for name, d := range map[string]time.Duration{"handshake timeout": c.HandshakeTimeout, "probe timeout": c.ProbeTimeout, "expiry warning": c.ExpiryWarning} {
		if d < 0 {
			errs = multierror.Append(errs, fmt.Errorf("%s %s is negative", name, d))
		}
	}
	if c.Admin != "" && c.Cluster == "" {
		errs = multierror.Append(errs, errors.New("an admin address needs the cluster whose gateway serves it"))
	}
	if c.Admin != "" {
		if _, _, err := net.SplitHostPort(c.Admin); err != nil {
			errs = multierror.Append(errs, fmt.Errorf("admin address %q: %w", c.Admin, err))
		}
	}
	if err := errs.ErrorOrNil(); err != nil {
		return fmt.Errorf("check: config: %w", err)
	}
	return nil
}

func or[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Run runs every check once. It returns an error only for a bad config;
// an unreachable etcd is a failed check.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.populate()
	r := &runner{cfg: cfg}
	rep := &Report{}
	snap, ok := r.etcd(ctx, rep)
	if !ok {
		return rep, nil
	}
	rep.Revision = snap.Revision()
	bundles := r.trust(snap, rep)
	// Gateways and paths are network checks: run them concurrently, report
	// them in a stable order.
	var peers, gw, path []Result
	var wg sync.WaitGroup
	wg.Go(func() { peers = r.trustPeers(ctx, snap, bundles) })
	wg.Go(func() { gw = r.gateways(ctx, snap, bundles) })
	wg.Go(func() { path = r.paths(ctx, snap, bundles) })
	wg.Wait()
	rep.Results = append(rep.Results, peers...)
	rep.Results = append(rep.Results, gw...)
	rep.Results = append(rep.Results, r.exports(snap)...)
	rep.Results = append(rep.Results, path...)
	return rep, nil
}

// Wait runs the checks until none fails or ctx ends, and returns the last
// complete report (a run that ctx cut short is not one, unless it is the
// only run). interval is the pause between runs; zero means one second.
// retry, if not nil, receives each failing report before the next run.
func Wait(ctx context.Context, cfg Config, interval time.Duration, retry func(*Report)) (*Report, error) {
	interval = or(interval, time.Second)
	var last *Report
	for {
		rep, err := Run(ctx, cfg)
		if err != nil {
			return nil, err
		}
		if ctx.Err() != nil && last != nil {
			return last, nil
		}
		if !rep.Failed() || ctx.Err() != nil {
			return rep, nil
		}
		last = rep
		if retry != nil {
			retry(rep)
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return last, nil
		case <-t.C:
		}
	}
}

type runner struct {
	cfg Config
}
