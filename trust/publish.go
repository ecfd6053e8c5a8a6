package trust

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
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
// has the sequence NextSequence(stored sequence, minSequence, now); pass as
// minSequence what else the sequence must reach (SPIRE's own sequence
// number, one above the publisher's last publication).
func NextBundleRecord(b *x509bundle.Bundle, stored *straitv1.TrustBundle, minSequence uint64, refreshHint time.Duration, now time.Time) (*straitv1.TrustBundle, bool) {
	if stored != nil {
		if sb, err := BundleFromProto(stored); err == nil && sameAuthorities(sb, b) {
			return nil, false
		}
	}
	return BundleToProto(b, NextSequence(stored.GetSequence(), minSequence, now), refreshHint, now), true
}

// NextSequence is the sequence of a new publication of a trust domain's
// bundle: above the sequence stored in etcd (zero when none), at least
// minSequence, and at least the Unix time in milliseconds.
//
// The time floor is what makes sequences keep increasing across a deletion
// of the key and a restart of the publisher, when neither etcd nor the
// publisher remembers the last sequence but every peer still holds it (a
// bundle store refuses a sequence not above the highest it applied). A
// deleted key's history is compacted away, and an etcd revision goes back
// when etcd is restored or replaced, but the clock of the next publisher
// only has to be past the previous publication: sequences run ahead of the
// clock by one per publication within the same millisecond, and clocks of
// a trust domain's hosts are synchronized far better than the time a
// deletion and a restart take. A publisher also never goes below its own
// last publication (minSequence) nor the record it replaces, so a clock
// stepped back delays nothing while the key exists or the publisher runs.
func NextSequence(stored, minSequence uint64, now time.Time) uint64 {
	return max(stored+1, minSequence, uint64(max(now.UnixMilli(), 0)))
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

// DefaultRepairInterval is the least time between two repairs of the key
// by a LocalBundlePublisher.
const DefaultRepairInterval = time.Second

// BundleKey is the etcd key of the local trust domain's bundle as it is,
// deletions and junk included (federation.Store.BundleKey); the watch
// cache's snapshot keeps the last valid record instead, which would hide
// junk from the publisher that must repair it.
type BundleKey interface {
	// Read returns what the key holds: exists is false when the key is
	// absent, rec is nil when it holds something other than a valid
	// record. err reports only a failed read.
	Read(ctx context.Context) (rec *straitv1.TrustBundle, exists bool, err error)
	// Watch calls changed after every write or deletion of the key until
	// ctx is done or the watch fails, and returns why it stopped.
	Watch(ctx context.Context, changed func()) error
}

// LocalBundlePublisherConfig configures a LocalBundlePublisher.
type LocalBundlePublisherConfig struct {
	// TrustDomain is the local trust domain. Required.
	TrustDomain spiffeid.TrustDomain
	// Source gives the local bundle and its changes (the CA). Required.
	Source BundleSource
	// Publisher writes the bundle (federation.Store). Required.
	Publisher BundlePublisher
	// Key reads and watches the trust domain's key as it is, so that a
	// deletion, junk or an older record written over the bundle is
	// repaired at once. Key or Lister is required; Key is used when both
	// are set.
	Key BundleKey
	// Lister reads what is stored (a watch cache's snapshot, which hides
	// junk). Used only without Key, re-checked every Interval.
	Lister BundleLister
	// RefreshHint is published with the bundle. Zero means
	// DefaultPublishInterval.
	RefreshHint time.Duration
	// Interval is how often the stored bundle is re-checked (a restored etcd
	// backup, a lost write, a missed watch event). Zero means
	// DefaultPublishInterval.
	Interval time.Duration
	// RepairInterval is the least time between a write and a repair of the
	// key prompted by its watch: another publisher writing another bundle
	// of the trust domain must not make the two rewrite the key as fast as
	// etcd allows. Zero means DefaultRepairInterval.
	RepairInterval time.Duration
	// Clock paces the re-checks and gives the time floor of sequences.
	// Zero means the real clock.
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
	if c.Key == nil && c.Lister == nil {
		errs = multierror.Append(errs, errors.New("Key or Lister is required"))
	}
	if c.RefreshHint < 0 || c.Interval < 0 || c.RepairInterval < 0 {
		errs = multierror.Append(errs, errors.New("RefreshHint, Interval and RepairInterval must not be negative"))
	}
	if err := errs.ErrorOrNil(); err != nil {
		return fmt.Errorf("trust: bundle publisher config: %w", err)
	}
	return nil
}

// Why the publisher writes, the value of logKeyStored.
const (
	storedAbsent  = "absent"  // no record: first publication, or deleted
	storedInvalid = "invalid" // junk written over the record
	storedOlder   = "older"   // this bundle with a sequence below the last one published
	storedOther   = "other"   // other authorities: the local bundle changed
)

// logKeyStored names what the publisher found in etcd when it wrote.
const logKeyStored = "stored"

// LocalBundlePublisher keeps the local trust domain's bundle published in
// etcd: at start, whenever the source changes (a root prepared or dropped),
// whenever the key changes (with Key: deleted, overwritten with junk or an
// older record) and every Interval. Its sequences keep increasing across
// deletions and restarts (NextSequence).
type LocalBundlePublisher struct {
	cfg LocalBundlePublisherConfig

	mu sync.Mutex // serializes PublishOnce
	// last is the highest sequence this publisher wrote or found holding
	// its bundle: the key may be deleted, the sequence must not go back.
	last uint64
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
	if cfg.RepairInterval == 0 {
		cfg.RepairInterval = DefaultRepairInterval
	}
	if cfg.Clock == nil {
		cfg.Clock = clockwork.NewRealClock()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &LocalBundlePublisher{cfg: cfg}, nil
}

// stored returns the record etcd holds for the trust domain and what it
// is: nil and storedAbsent or storedInvalid, or the record and "".
func (p *LocalBundlePublisher) stored(ctx context.Context) (*straitv1.TrustBundle, string, error) {
	td := p.cfg.TrustDomain.Name()
	if p.cfg.Key != nil {
		rec, exists, err := p.cfg.Key.Read(ctx)
		switch {
		case err != nil:
			return nil, "", fmt.Errorf("trust: read bundle of %s: %w", td, err)
		case !exists:
			return nil, storedAbsent, nil
		case rec == nil || rec.GetTrustDomain() != td:
			return nil, storedInvalid, nil
		}
		if _, err := BundleFromProto(rec); err != nil {
			return nil, storedInvalid, nil
		}
		return rec, "", nil
	}
	records, err := p.cfg.Lister.ListBundles(ctx)
	if err != nil {
		return nil, "", fmt.Errorf("trust: list bundles: %w", err)
	}
	for _, r := range records {
		if r.GetTrustDomain() == td {
			if _, err := BundleFromProto(r); err != nil {
				return nil, storedInvalid, nil
			}
			return r, "", nil
		}
	}
	return nil, storedAbsent, nil
}

// PublishOnce publishes the local bundle unless etcd holds it already, with
// a sequence no lower than the last one published. It reports whether it
// wrote.
func (p *LocalBundlePublisher) PublishOnce(ctx context.Context) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	b, err := p.cfg.Source.GetX509BundleForTrustDomain(p.cfg.TrustDomain)
	if err != nil {
		return false, fmt.Errorf("trust: local bundle: %w", err)
	}
	stored, state, err := p.stored(ctx)
	if err != nil {
		return false, err
	}
	if stored != nil {
		sb, _ := BundleFromProto(stored) // validated by p.stored
		switch {
		case !sameAuthorities(sb, b):
			state = storedOther
		case stored.GetSequence() < p.last:
			state = storedOlder
		default: // current; a restarted publisher learns its sequence here
			p.last = stored.GetSequence()
			return false, nil
		}
	}
	now := p.cfg.Clock.Now()
	rec := BundleToProto(b, NextSequence(max(stored.GetSequence(), p.last), 0, now), p.cfg.RefreshHint, now)
	if err := p.cfg.Publisher.PublishBundle(ctx, rec); err != nil {
		return false, fmt.Errorf("trust: publish bundle of %s sequence %d: %w", p.cfg.TrustDomain.Name(), rec.GetSequence(), err)
	}
	// A repair (junk, an older record, a deletion of what this publisher
	// wrote) is worth a warning: someone wrote or deleted the key.
	log := p.cfg.Logger.Info
	if state == storedInvalid || state == storedOlder || (state == storedAbsent && p.last > 0) {
		log = p.cfg.Logger.Warn
	}
	p.last = rec.GetSequence()
	log("published trust bundle", logKeyTrustDomain, p.cfg.TrustDomain.Name(), logKeySequence, rec.GetSequence(), logKeyStored, state)
	return true, nil
}

// Run publishes at start, on every change of the source or of the key and
// every Interval, until ctx is done; it returns ctx.Err(). Failures are
// logged and retried at the next occasion.
func (p *LocalBundlePublisher) Run(ctx context.Context) error {
	ticker := p.cfg.Clock.NewTicker(p.cfg.Interval)
	defer ticker.Stop()
	keyChanged := make(chan struct{}, 1)
	if p.cfg.Key != nil {
		var wg sync.WaitGroup
		defer wg.Wait()
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		wg.Go(func() { p.watchKey(wctx, keyChanged) })
	}
	var lastWrite time.Time
	for {
		changed := p.cfg.Source.Changed()
		wrote, err := p.PublishOnce(ctx)
		if err != nil && ctx.Err() == nil {
			p.cfg.Logger.Warn("trust bundle publication failed", logKeyTrustDomain, p.cfg.TrustDomain.Name(), logKeyError, err)
		}
		if wrote {
			lastWrite = p.cfg.Clock.Now()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		case <-ticker.Chan():
		case <-keyChanged:
			if wait := p.cfg.RepairInterval - p.cfg.Clock.Since(lastWrite); wait > 0 {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-p.cfg.Clock.After(wait):
				}
			}
		}
	}
}

// watchKey signals keyChanged at every change of the key, re-watching with
// a pause after a failure (and signalling then: events may have been
// missed), until ctx is done.
func (p *LocalBundlePublisher) watchKey(ctx context.Context, keyChanged chan<- struct{}) {
	signal := func() {
		select {
		case keyChanged <- struct{}{}:
		default:
		}
	}
	for {
		err := p.cfg.Key.Watch(ctx, signal)
		if ctx.Err() != nil {
			return
		}
		p.cfg.Logger.Warn("trust bundle key watch failed", logKeyTrustDomain, p.cfg.TrustDomain.Name(), logKeyError, err)
		signal()
		select {
		case <-ctx.Done():
			return
		case <-p.cfg.Clock.After(p.cfg.RepairInterval):
		}
	}
}
