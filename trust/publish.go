package trust

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hashicorp/go-multierror"
	"github.com/jonboulle/clockwork"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// BundlePublisher publishes a trust domain's bundle at trust/<trust-domain>,
// refusing a sequence not above the one stored (compare-and-swap).
// federation.Store satisfies it.
type BundlePublisher interface {
	PublishBundle(ctx context.Context, b *straitv1.TrustBundle) error
}

// BundleLister returns every bundle record stored under trust/.
type BundleLister interface {
	ListBundles(ctx context.Context) ([]*straitv1.TrustBundle, error)
}

// BundleListerFunc adapts a function to BundleLister, e.g. the federation
// watch cache's snapshot:
//
//	trust.BundleListerFunc(func(context.Context) ([]*straitv1.TrustBundle, error) {
//		return cache.Snapshot().Bundles(), nil
//	})
type BundleListerFunc func(ctx context.Context) ([]*straitv1.TrustBundle, error)

// ListBundles calls f.
func (f BundleListerFunc) ListBundles(ctx context.Context) ([]*straitv1.TrustBundle, error) {
	return f(ctx)
}

// NextBundleRecord decides what to publish for a local bundle given the
// record stored for its trust domain (nil when none). It returns false when
// the stored record already holds the same authorities. Otherwise the record
// has a sequence above the stored one and at least minSequence (SPIRE's
// own sequence number, for example).
func NextBundleRecord(b *x509bundle.Bundle, stored *straitv1.TrustBundle, minSequence uint64, refreshHint time.Duration, now time.Time) (*straitv1.TrustBundle, bool) {
	if stored != nil {
		if sb, err := BundleFromProto(stored); err == nil && sameAuthorities(sb, b) {
			return nil, false
		}
	}
	seq := max(stored.GetSequence()+1, minSequence)
	return BundleToProto(b, seq, refreshHint, now), true
}

// BundleSource is a source of the local bundle that says when it changes: a
// *CA or a Source.
type BundleSource interface {
	x509bundle.Source
	Changed() <-chan struct{}
}

// DefaultPublishInterval is how often a LocalBundlePublisher re-checks the
// stored bundle without a change of its own.
const DefaultPublishInterval = time.Minute

// LocalBundlePublisherConfig configures a LocalBundlePublisher.
type LocalBundlePublisherConfig struct {
	// TrustDomain is the local trust domain. Required.
	TrustDomain spiffeid.TrustDomain
	// Source gives the local bundle and its changes (the CA). Required.
	Source BundleSource
	// Publisher writes the bundle (federation.Store). Required.
	Publisher BundlePublisher
	// Lister reads what is stored. Required.
	Lister BundleLister
	// RefreshHint is published with the bundle. Zero means
	// DefaultPublishInterval.
	RefreshHint time.Duration
	// Interval is how often the stored bundle is re-checked (a restored etcd
	// backup, a lost write). Zero means DefaultPublishInterval.
	Interval time.Duration
	// Clock paces the re-checks. Zero means the real clock.
	Clock clockwork.Clock
	// Logger logs publications and failures. Zero means slog.Default().
	Logger *slog.Logger
}

func (c *LocalBundlePublisherConfig) validate() error {
	var errs *multierror.Error
	if c.TrustDomain.IsZero() {
		errs = multierror.Append(errs, errors.New("TrustDomain is required"))
	}
	if c.Source == nil {
		errs = multierror.Append(errs, errors.New("Source is required"))
	}
	if c.Publisher == nil {
		errs = multierror.Append(errs, errors.New("Publisher is required"))
	}
	if c.Lister == nil {
		errs = multierror.Append(errs, errors.New("Lister is required"))
	}
	if c.RefreshHint < 0 || c.Interval < 0 {
		errs = multierror.Append(errs, errors.New("RefreshHint and Interval must not be negative"))
	}
	if err := errs.ErrorOrNil(); err != nil {
		return fmt.Errorf("trust: bundle publisher config: %w", err)
	}
	return nil
}

// LocalBundlePublisher keeps the local trust domain's bundle published in
// etcd: at start, whenever the source changes (a root prepared or dropped),
// and every Interval.
type LocalBundlePublisher struct {
	cfg LocalBundlePublisherConfig
}

// NewLocalBundlePublisher creates a publisher.
func NewLocalBundlePublisher(cfg LocalBundlePublisherConfig) (*LocalBundlePublisher, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.RefreshHint == 0 {
		cfg.RefreshHint = DefaultPublishInterval
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultPublishInterval
	}
	if cfg.Clock == nil {
		cfg.Clock = clockwork.NewRealClock()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &LocalBundlePublisher{cfg: cfg}, nil
}

// PublishOnce publishes the local bundle if the stored one differs. It
// reports whether it wrote.
func (p *LocalBundlePublisher) PublishOnce(ctx context.Context) (bool, error) {
	b, err := p.cfg.Source.GetX509BundleForTrustDomain(p.cfg.TrustDomain)
	if err != nil {
		return false, fmt.Errorf("trust: local bundle: %w", err)
	}
	records, err := p.cfg.Lister.ListBundles(ctx)
	if err != nil {
		return false, fmt.Errorf("trust: list bundles: %w", err)
	}
	var stored *straitv1.TrustBundle
	for _, r := range records {
		if r.GetTrustDomain() == p.cfg.TrustDomain.Name() {
			stored = r
		}
	}
	rec, ok := NextBundleRecord(b, stored, 0, p.cfg.RefreshHint, p.cfg.Clock.Now())
	if !ok {
		return false, nil
	}
	if err := p.cfg.Publisher.PublishBundle(ctx, rec); err != nil {
		return false, fmt.Errorf("trust: publish bundle of %s sequence %d: %w", p.cfg.TrustDomain.Name(), rec.GetSequence(), err)
	}
	p.cfg.Logger.Info("published trust bundle", logKeyTrustDomain, p.cfg.TrustDomain.Name(), logKeySequence, rec.GetSequence())
	return true, nil
}

// Run publishes at start, on every change of the source and every Interval,
// until ctx is done; it returns ctx.Err(). Failures are logged and retried
// at the next occasion.
func (p *LocalBundlePublisher) Run(ctx context.Context) error {
	ticker := p.cfg.Clock.NewTicker(p.cfg.Interval)
	defer ticker.Stop()
	for {
		changed := p.cfg.Source.Changed()
		if _, err := p.PublishOnce(ctx); err != nil && ctx.Err() == nil {
			p.cfg.Logger.Warn("trust bundle publication failed", logKeyTrustDomain, p.cfg.TrustDomain.Name(), logKeyError, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		case <-ticker.Chan():
		}
	}
}
