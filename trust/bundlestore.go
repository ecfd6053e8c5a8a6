package trust

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-multierror"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// logKeyKeepFor is how long a bundle whose record was deleted stays
// trusted.
const logKeyKeepFor = "keep_for"

// Results of a bundle update, the result label of
// strait_trust_bundle_updates_total.
const (
	resultApplied   = "applied"
	resultUnchanged = "unchanged"
	resultStale     = "stale"
	resultInvalid   = "invalid"
	resultIgnored   = "ignored"
)

// BundleStoreConfig configures a BundleStore.
type BundleStoreConfig struct {
	// TrustDomain is the local trust domain. Required.
	TrustDomain spiffeid.TrustDomain
	// Local serves the local trust domain's bundle, always and live: the CA,
	// or the SVID source (SPIRE). Required. Records of the local trust
	// domain are ignored: Local is authoritative for it.
	Local x509bundle.Source
	// Federates lists the trust domains whose bundles the store accepts.
	// Records of others are ignored (Apply returns ErrNotFederated). Zero
	// means every trust domain.
	Federates []spiffeid.TrustDomain
	// Logger logs rejected records. Zero means slog.Default().
	Logger *slog.Logger
	// Metrics records updates. Zero means no metrics.
	Metrics *Metrics
	// KeepDeleted is how long Sync keeps trusting a bundle whose record
	// left the list (its key was deleted): its publisher repairs the key
	// within moments, and handshakes in between must not fail. A record
	// listed again in time replaces it as usual. Zero means none: the
	// bundle is withdrawn at once.
	KeepDeleted time.Duration
}

func (c *BundleStoreConfig) validate() error {
	var errs *multierror.Error
	if c.TrustDomain.IsZero() {
		errs = multierror.Append(errs, errors.New("TrustDomain is required"))
	}
	if c.Local == nil {
		errs = multierror.Append(errs, errors.New("Local bundle source is required"))
	}
	if c.KeepDeleted < 0 {
		errs = multierror.Append(errs, fmt.Errorf("negative KeepDeleted %s", c.KeepDeleted))
	}
	for i, td := range c.Federates {
		if td.IsZero() {
			errs = multierror.Append(errs, fmt.Errorf("Federates[%d] is the zero trust domain", i))
		}
	}
	if err := errs.ErrorOrNil(); err != nil {
		return fmt.Errorf("trust: bundle store config: %w", err)
	}
	return nil
}

// BundleStore holds one X.509 bundle per trust domain and implements
// x509bundle.Source: a peer is verified only against the bundle of its own
// trust domain. Federated bundles arrive as TrustBundle records (Apply,
// Sync); their sequence numbers never go backwards. It is safe for
// concurrent use.
type BundleStore struct {
	td        spiffeid.TrustDomain
	local     x509bundle.Source
	federates map[spiffeid.TrustDomain]bool // nil: every trust domain
	log       *slog.Logger
	metrics   *Metrics
	changed   notifier
	keep      time.Duration // KeepDeleted

	mu      sync.RWMutex
	bundles map[spiffeid.TrustDomain]*storedBundle
	// highest is the highest sequence ever applied per trust domain, kept
	// after a removal so that a removed bundle cannot come back older.
	highest map[spiffeid.TrustDomain]uint64
	// deleted holds when Sync first missed the record of a bundle still
	// kept (KeepDeleted); listed is the last list Sync saw, and recheck
	// says that a withdraw with it is scheduled.
	deleted map[spiffeid.TrustDomain]time.Time
	listed  map[string]bool
	recheck bool
}

type storedBundle struct {
	bundle      *x509bundle.Bundle
	sequence    uint64
	refreshHint time.Duration
}

// NewBundleStore creates a store holding only the local bundle.
func NewBundleStore(cfg BundleStoreConfig) (*BundleStore, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &BundleStore{
		td:      cfg.TrustDomain,
		local:   cfg.Local,
		log:     cfg.Logger,
		metrics: cfg.Metrics,
		bundles: map[spiffeid.TrustDomain]*storedBundle{},
		highest: map[spiffeid.TrustDomain]uint64{},
		deleted: map[spiffeid.TrustDomain]time.Time{},
		keep:    cfg.KeepDeleted,
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if len(cfg.Federates) > 0 {
		s.federates = map[spiffeid.TrustDomain]bool{}
		for _, td := range cfg.Federates {
			s.federates[td] = true
		}
	}
	return s, nil
}

// GetX509BundleForTrustDomain implements x509bundle.Source. It fails with
// *UnknownTrustDomainError for a trust domain it holds no bundle of.
func (s *BundleStore) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	if td == s.td {
		b, err := s.local.GetX509BundleForTrustDomain(td)
		if err != nil {
			return nil, fmt.Errorf("trust: local bundle: %w", err)
		}
		return b, nil
	}
	s.mu.RLock()
	sb, ok := s.bundles[td]
	s.mu.RUnlock()
	if !ok {
		return nil, &UnknownTrustDomainError{TrustDomain: td}
	}
	return sb.bundle.Clone(), nil
}

// Changed returns a channel closed at the next change of a federated bundle.
func (s *BundleStore) Changed() <-chan struct{} { return s.changed.Changed() }

// Sequence returns the sequence of the bundle held for td.
func (s *BundleStore) Sequence(td spiffeid.TrustDomain) (uint64, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	sb, ok := s.bundles[td]
	if !ok {
		return 0, false
	}
	return sb.sequence, true
}

// RefreshHint returns the refresh hint of the bundle held for td, zero when
// it has none.
func (s *BundleStore) RefreshHint(td spiffeid.TrustDomain) time.Duration {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if sb, ok := s.bundles[td]; ok {
		return sb.refreshHint
	}
	return 0
}

// TrustDomains lists the trust domains the store has a bundle of, the local
// one included, sorted by name.
func (s *BundleStore) TrustDomains() []spiffeid.TrustDomain {
	s.mu.RLock()
	out := []spiffeid.TrustDomain{s.td}
	for td := range s.bundles {
		out = append(out, td)
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b spiffeid.TrustDomain) int { return cmp.Compare(a.Name(), b.Name()) })
	return out
}

// Apply offers one record. It returns nil when the record was applied or
// was already held (same sequence, same authorities), and otherwise an error
// matching ErrNotFederated (the record's trust domain is not in Federates, or
// is the local one), ErrStaleBundle (its sequence is lower than the one held,
// or equal with other authorities), ErrInvalidBundle or ErrNotCA. On error
// the bundle held is kept.
func (s *BundleStore) Apply(rec *straitv1.TrustBundle) error {
	b, err := BundleFromProto(rec)
	if err != nil {
		s.metrics.observeBundle(rec.GetTrustDomain(), resultInvalid, 0, false)
		return err
	}
	td := b.TrustDomain()
	if td == s.td || (s.federates != nil && !s.federates[td]) {
		s.metrics.observeBundle(td.Name(), resultIgnored, 0, false)
		return fmt.Errorf("%w: %s", ErrNotFederated, td.Name())
	}
	seq := rec.GetSequence()

	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, ok := s.bundles[td]; ok && seq == cur.sequence && sameAuthorities(cur.bundle, b) {
		s.metrics.observeBundle(td.Name(), resultUnchanged, seq, false)
		return nil
	}
	if high, seen := s.highest[td]; seen && seq <= high {
		s.metrics.observeBundle(td.Name(), resultStale, seq, false)
		return fmt.Errorf("%w: %s sequence %d, already have %d", ErrStaleBundle, td.Name(), seq, high)
	}
	prev := s.highest[td]
	s.bundles[td] = &storedBundle{bundle: b, sequence: seq, refreshHint: rec.GetRefreshHint().AsDuration()}
	s.highest[td] = seq
	s.log.Info("trust bundle updated", logKeyTrustDomain, td.Name(), logKeySequence, seq, logKeyPrevious, prev)
	s.metrics.observeBundle(td.Name(), resultApplied, seq, true)
	s.changed.notify()
	return nil
}

// Sync makes the store hold exactly the given records (the list of every
// bundle in etcd): it applies each one and removes the federated bundles of
// trust domains no longer listed, KeepDeleted later. Records of trust domains not federated are
// skipped silently; the other failures are logged and returned together.
func (s *BundleStore) Sync(recs []*straitv1.TrustBundle) error {
	var errs *multierror.Error
	listed := map[string]bool{}
	for _, rec := range recs {
		listed[rec.GetTrustDomain()] = true
		err := s.Apply(rec)
		switch {
		case err == nil, errors.Is(err, ErrNotFederated):
		default:
			s.log.Warn("trust bundle rejected", logKeyTrustDomain, rec.GetTrustDomain(),
				logKeySequence, rec.GetSequence(), logKeyError, err)
			errs = multierror.Append(errs, err)
		}
	}
	s.withdraw(listed)
	return errs.ErrorOrNil()
}

// withdraw removes the bundles whose records are not listed once they
// have been missing for KeepDeleted, re-running itself with the latest list
// when one is due later.
func (s *BundleStore) withdraw(listed map[string]bool) {
	now := time.Now()
	s.mu.Lock()
	s.listed = listed
	removed := false
	var due time.Duration
	for td := range s.bundles {
		if listed[td.Name()] {
			delete(s.deleted, td)
			continue
		}
		since, ok := s.deleted[td]
		if !ok {
			since = now
			s.deleted[td] = now
			if s.keep > 0 {
				s.log.Warn("trust bundle record deleted: still trusted for a moment, for its publisher to restore it",
					logKeyTrustDomain, td.Name(), logKeyKeepFor, s.keep)
			}
		}
		if left := since.Add(s.keep).Sub(now); left > 0 {
			due = max(due, left)
			continue
		}
		delete(s.bundles, td)
		delete(s.deleted, td)
		removed = true
	}
	if due > 0 && !s.recheck {
		s.recheck = true
		time.AfterFunc(due, func() {
			s.mu.Lock()
			l := s.listed
			s.recheck = false
			s.mu.Unlock()
			s.withdraw(l)
		})
	}
	s.mu.Unlock()
	if removed {
		s.changed.notify()
	}
}

// Remove forgets the bundle of a federated trust domain (its bundle was
// deleted from etcd). The highest sequence seen is kept: the bundle can come
// back only with a higher one.
func (s *BundleStore) Remove(td spiffeid.TrustDomain) {
	s.mu.Lock()
	_, ok := s.bundles[td]
	delete(s.bundles, td)
	delete(s.deleted, td)
	s.mu.Unlock()
	if ok {
		s.changed.notify()
	}
}
