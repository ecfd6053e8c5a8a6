package spiresync

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/hashicorp/go-multierror"
	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
	"github.com/strait-mesh/strait/trust"
)

// Defaults of Config.
const (
	DefaultInterval    = 10 * time.Second
	DefaultRefreshHint = time.Minute
)

// Log keys.
const (
	logKeyTrustDomain = "trust_domain"
	logKeySequence    = "sequence"
	logKeyError       = "error"
)

// BundlePublisher publishes the local bundle; federation.Store satisfies it.
type BundlePublisher = trust.BundlePublisher

// BundleLister reads the bundles stored in etcd.
type BundleLister = trust.BundleLister

// BundleListerFunc adapts a function to BundleLister.
type BundleListerFunc = trust.BundleListerFunc

// Config configures a Syncer.
type Config struct {
	// Conn is a gRPC connection to the SPIRE server's API socket. Required.
	Conn grpc.ClientConnInterface
	// TrustDomain is the SPIRE server's trust domain. Required.
	TrustDomain spiffeid.TrustDomain
	// Publisher stores the local bundle in etcd. Required.
	Publisher BundlePublisher
	// Lister reads the bundles stored in etcd. Required.
	Lister BundleLister
	// Federates lists the trust domains whose bundles are written into
	// SPIRE. Zero means every trust domain found in etcd.
	Federates []spiffeid.TrustDomain
	// Interval is the time between two syncs in Run. Zero means
	// DefaultInterval.
	Interval time.Duration
	// RefreshHint is published with the local bundle when SPIRE gives none.
	// Zero means DefaultRefreshHint.
	RefreshHint time.Duration
	// Clock paces Run. Zero means the real clock.
	Clock clockwork.Clock
	// Logger logs sync failures. Zero means slog.Default().
	Logger *slog.Logger
	// Registerer registers strait_trust_spire_sync_total. Zero means no
	// metrics.
	Registerer prometheus.Registerer
}

func (c *Config) validate() error {
	var errs *multierror.Error
	if c.Conn == nil {
		errs = multierror.Append(errs, errors.New("Conn is required"))
	}
	if c.TrustDomain.IsZero() {
		errs = multierror.Append(errs, errors.New("TrustDomain is required"))
	}
	if c.Publisher == nil {
		errs = multierror.Append(errs, errors.New("Publisher is required"))
	}
	if c.Lister == nil {
		errs = multierror.Append(errs, errors.New("Lister is required"))
	}
	if c.Interval < 0 || c.RefreshHint < 0 {
		errs = multierror.Append(errs, errors.New("Interval and RefreshHint must not be negative"))
	}
	if err := errs.ErrorOrNil(); err != nil {
		return fmt.Errorf("trust: SPIRE sync config: %w", err)
	}
	return nil
}

func (c *Config) populate() {
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	if c.RefreshHint == 0 {
		c.RefreshHint = DefaultRefreshHint
	}
	if c.Clock == nil {
		c.Clock = clockwork.NewRealClock()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Syncer moves bundles between one SPIRE server and etcd. It is safe for
// concurrent use; Run and SyncOnce serialize.
type Syncer struct {
	cfg    Config
	client bundlev1.BundleClient
	syncs  *prometheus.CounterVec

	mu sync.Mutex
	// store validates the records read from etcd: CA authorities, sequence
	// never backwards, the allow-list.
	store *trust.BundleStore
	// written is the sequence of each federated bundle last written to SPIRE.
	written map[spiffeid.TrustDomain]uint64
	// published is the sequence of the local bundle last published to
	// etcd: a publication after the key was deleted goes above it.
	published uint64
}

// New creates a Syncer.
func New(cfg Config) (*Syncer, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.populate()
	// The store holds federated bundles only; the local one comes from SPIRE.
	store, err := trust.NewBundleStore(trust.BundleStoreConfig{
		TrustDomain: cfg.TrustDomain,
		Local:       x509bundle.New(cfg.TrustDomain),
		Federates:   cfg.Federates,
		Logger:      cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	s := &Syncer{
		cfg:     cfg,
		client:  bundlev1.NewBundleClient(cfg.Conn),
		store:   store,
		written: map[spiffeid.TrustDomain]uint64{},
	}
	if cfg.Registerer != nil {
		s.syncs = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strait_trust_spire_sync_total",
			Help: "Bundle syncs between the SPIRE server and etcd, by direction (push, pull) and result (ok, error).",
		}, []string{"direction", "result"})
		if err := cfg.Registerer.Register(s.syncs); err != nil {
			return nil, fmt.Errorf("trust: register SPIRE sync metrics: %w", err)
		}
	}
	return s, nil
}

// Run syncs at once and then every Interval until ctx is done; it returns
// ctx.Err(). Failures are logged and retried at the next interval.
func (s *Syncer) Run(ctx context.Context) error {
	s.syncOrLog(ctx)
	ticker := s.cfg.Clock.NewTicker(s.cfg.Interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ticker.Chan():
			s.syncOrLog(ctx)
		}
	}
}

func (s *Syncer) syncOrLog(ctx context.Context) {
	if err := s.SyncOnce(ctx); err != nil && ctx.Err() == nil {
		s.cfg.Logger.Warn("SPIRE bundle sync failed", logKeyTrustDomain, s.cfg.TrustDomain.Name(), logKeyError, err)
	}
}

// SyncOnce pushes the local bundle to etcd, then pulls the federated
// bundles into SPIRE. It returns the failures of both.
func (s *Syncer) SyncOnce(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	records, err := s.cfg.Lister.ListBundles(ctx)
	if err != nil {
		s.count("push", err)
		s.count("pull", err)
		return fmt.Errorf("trust: list bundles: %w", err)
	}
	var errs *multierror.Error
	err = s.push(ctx, records)
	s.count("push", err)
	errs = multierror.Append(errs, err)
	err = s.pull(ctx, records)
	s.count("pull", err)
	errs = multierror.Append(errs, err)
	return errs.ErrorOrNil()
}

func (s *Syncer) count(direction string, err error) {
	if s.syncs == nil {
		return
	}
	result := "ok"
	if err != nil {
		result = "error"
	}
	s.syncs.WithLabelValues(direction, result).Inc()
}

// push publishes the SPIRE server's bundle when its X.509 authorities
// differ from those stored in etcd.
func (s *Syncer) push(ctx context.Context, records []*straitv1.TrustBundle) error {
	b, err := s.client.GetBundle(ctx, &bundlev1.GetBundleRequest{})
	if err != nil {
		return fmt.Errorf("trust: SPIRE GetBundle: %w", err)
	}
	if b.GetTrustDomain() != s.cfg.TrustDomain.Name() {
		return fmt.Errorf("trust: SPIRE server is in trust domain %q, not %q", b.GetTrustDomain(), s.cfg.TrustDomain.Name())
	}
	var authorities []*x509.Certificate
	for _, a := range b.GetX509Authorities() {
		c, err := x509.ParseCertificate(a.GetAsn1())
		if err != nil {
			return fmt.Errorf("trust: SPIRE bundle of %s: %w", b.GetTrustDomain(), err)
		}
		authorities = append(authorities, c)
	}
	bundle := x509bundle.FromX509Authorities(s.cfg.TrustDomain, authorities)
	// Validate what SPIRE gives as strictly as what is read from etcd.
	if _, err := trust.BundleFromProto(trust.BundleToProto(bundle, 0, 0, time.Time{})); err != nil {
		return fmt.Errorf("trust: SPIRE bundle of %s: %w", b.GetTrustDomain(), err)
	}
	var stored *straitv1.TrustBundle
	for _, r := range records {
		if r.GetTrustDomain() == s.cfg.TrustDomain.Name() {
			stored = r
		}
	}
	hint := time.Duration(b.GetRefreshHint()) * time.Second
	if hint <= 0 {
		hint = s.cfg.RefreshHint
	}
	// Sequences follow trust.NextSequence, as the built-in CA's publisher
	// does: above the stored one, SPIRE's and the last one published here,
	// and at least the Unix time in milliseconds, so that they keep
	// increasing across a deletion of the key and a restart of the sync.
	rec, changed := trust.NextBundleRecord(bundle, stored, max(b.GetSequenceNumber(), s.published+1), hint, s.cfg.Clock.Now())
	if !changed {
		s.published = max(s.published, stored.GetSequence())
		return nil
	}
	if err := s.cfg.Publisher.PublishBundle(ctx, rec); err != nil {
		return fmt.Errorf("trust: publish bundle of %s sequence %d: %w", rec.GetTrustDomain(), rec.GetSequence(), err)
	}
	s.published = rec.GetSequence()
	s.cfg.Logger.Info("published SPIRE bundle", logKeyTrustDomain, rec.GetTrustDomain(), logKeySequence, rec.GetSequence())
	return nil
}

// pull writes into SPIRE the federated bundles that changed since last
// written.
func (s *Syncer) pull(ctx context.Context, records []*straitv1.TrustBundle) error {
	// Sync skips records of trust domains not federated and of the local
	// one, and reports (and keeps out) invalid and stale ones.
	errs := multierror.Append(nil, s.store.Sync(records))
	var batch []*types.Bundle
	var seqs []uint64
	for _, td := range s.store.TrustDomains() {
		if td == s.cfg.TrustDomain {
			continue
		}
		seq, _ := s.store.Sequence(td)
		if w, ok := s.written[td]; ok && w == seq {
			continue
		}
		b, err := s.store.GetX509BundleForTrustDomain(td)
		if err != nil {
			errs = multierror.Append(errs, err)
			continue
		}
		tb := &types.Bundle{
			TrustDomain:    td.Name(),
			RefreshHint:    int64(s.store.RefreshHint(td) / time.Second),
			SequenceNumber: seq,
		}
		for _, c := range b.X509Authorities() {
			tb.X509Authorities = append(tb.X509Authorities, &types.X509Certificate{Asn1: c.Raw})
		}
		batch = append(batch, tb)
		seqs = append(seqs, seq)
	}
	if len(batch) == 0 {
		return errs.ErrorOrNil()
	}
	resp, err := s.client.BatchSetFederatedBundle(ctx, &bundlev1.BatchSetFederatedBundleRequest{Bundle: batch})
	if err != nil {
		return multierror.Append(errs, fmt.Errorf("trust: SPIRE BatchSetFederatedBundle: %w", err)).ErrorOrNil()
	}
	for i, r := range resp.GetResults() {
		if i >= len(batch) {
			break
		}
		td := spiffeid.RequireTrustDomainFromString(batch[i].GetTrustDomain())
		if code := codes.Code(r.GetStatus().GetCode()); code != codes.OK {
			errs = multierror.Append(errs, fmt.Errorf("trust: SPIRE refused the bundle of %s: %s: %s", td.Name(), code, r.GetStatus().GetMessage()))
			continue
		}
		s.written[td] = seqs[i]
		s.cfg.Logger.Info("federated bundle written to SPIRE", logKeyTrustDomain, td.Name(), logKeySequence, seqs[i])
	}
	return errs.ErrorOrNil()
}
