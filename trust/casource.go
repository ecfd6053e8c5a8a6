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
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// DefaultRetryInterval is how long CASource waits after a failed issue
// before trying again, unless the SVID would expire sooner.
const DefaultRetryInterval = 5 * time.Second

// CASourceConfig configures a CASource.
type CASourceConfig struct {
	// CA signs the SVIDs. Required.
	CA *CA
	// ID is the SPIFFE ID of the SVIDs, in the CA's trust domain. Required.
	ID spiffeid.ID
	// TTL is the lifetime of each SVID. Zero means DefaultSVIDTTL.
	TTL time.Duration
	// RetryInterval is the wait after a failed issue. Zero means
	// DefaultRetryInterval.
	RetryInterval time.Duration
	// Clock schedules rotations. Zero means the real clock. Give the CA the
	// same clock (CAConfig.Now = Clock.Now).
	Clock clockwork.Clock
	// Logger logs rotations and failures. Zero means slog.Default().
	Logger *slog.Logger
	// Metrics records SVID expiry and rotations. Zero means no metrics.
	Metrics *Metrics
}

func (c *CASourceConfig) validate() error {
	var errs *multierror.Error
	if c.CA == nil {
		errs = multierror.Append(errs, errors.New("CA is required"))
	}
	if c.ID.IsZero() {
		errs = multierror.Append(errs, errors.New("ID is required"))
	} else if c.CA != nil && !c.ID.MemberOf(c.CA.TrustDomain()) {
		errs = multierror.Append(errs, fmt.Errorf("ID %s is not in the CA's trust domain %s", c.ID, c.CA.TrustDomain()))
	}
	if c.TTL < 0 {
		errs = multierror.Append(errs, fmt.Errorf("negative TTL %s", c.TTL))
	}
	if c.RetryInterval < 0 {
		errs = multierror.Append(errs, fmt.Errorf("negative RetryInterval %s", c.RetryInterval))
	}
	if err := errs.ErrorOrNil(); err != nil {
		return fmt.Errorf("trust: CA source config: %w", err)
	}
	return nil
}

func (c *CASourceConfig) populate() {
	if c.TTL == 0 {
		c.TTL = DefaultSVIDTTL
	}
	if c.RetryInterval == 0 {
		c.RetryInterval = DefaultRetryInterval
	}
	if c.Clock == nil {
		c.Clock = clockwork.NewRealClock()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// CASource is a Source of SVIDs signed by the built-in CA. It holds an SVID
// from the moment it is made; Run renews it at half its lifetime, and at once
// when the CA activates a new root. It is safe for concurrent use.
type CASource struct {
	cfg     CASourceConfig
	changed notifier

	mu     sync.RWMutex
	svid   *x509svid.SVID
	failed bool // the last rotation failed: retry soon
}

// NewCASource creates a source and issues its first SVID.
func NewCASource(cfg CASourceConfig) (*CASource, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.populate()
	s := &CASource{cfg: cfg}
	if err := s.Rotate(); err != nil {
		return nil, err
	}
	return s, nil
}

// GetX509SVID implements x509svid.Source.
func (s *CASource) GetX509SVID() (*x509svid.SVID, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.svid == nil {
		return nil, ErrNotReady
	}
	return s.svid, nil
}

// GetX509BundleForTrustDomain implements x509bundle.Source with the CA's
// bundle.
func (s *CASource) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	return s.cfg.CA.GetX509BundleForTrustDomain(td)
}

// Changed returns a channel closed at the next new SVID or CA root change.
func (s *CASource) Changed() <-chan struct{} { return s.changed.Changed() }

// Rotate issues a new SVID now.
func (s *CASource) Rotate() error {
	svid, err := s.cfg.CA.IssueX509SVID(s.cfg.ID, s.cfg.TTL)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.svid, s.failed = svid, false
	s.mu.Unlock()
	leaf := svid.Certificates[0]
	s.cfg.Metrics.observeSVID(s.cfg.ID.String(), float64(leaf.NotAfter.Unix()))
	s.cfg.Logger.Debug("SVID issued", logKeySPIFFEID, s.cfg.ID.String(), logKeyNotAfter, leaf.NotAfter)
	s.changed.notify()
	return nil
}

// Run renews the SVID at half its lifetime and when the CA activates a new
// root, until ctx is done; it returns ctx.Err().
func (s *CASource) Run(ctx context.Context) error {
	for {
		// Take the change channel before looking at the roots, so that an
		// activation in between closes it rather than being missed.
		caChanged := s.cfg.CA.Changed()
		if !s.signedByActiveRoot() {
			s.rotateOrLog()
		}
		timer := s.cfg.Clock.NewTimer(s.untilRotation())
		select {
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		case <-timer.Chan():
			s.rotateOrLog()
		case <-caChanged:
			timer.Stop()
			if s.signedByActiveRoot() {
				s.changed.notify() // only the bundle changed
			} else {
				s.rotateOrLog() // notifies
			}
		}
	}
}

func (s *CASource) rotateOrLog() {
	if err := s.Rotate(); err != nil {
		s.cfg.Logger.Error("SVID rotation failed", logKeySPIFFEID, s.cfg.ID.String(), logKeyError, err)
		s.mu.Lock()
		s.failed = true
		s.mu.Unlock()
		s.changed.notify() // what changed may be the bundle
	}
}

// untilRotation is how long until the SVID reaches half its lifetime, or
// the retry interval after a failure.
func (s *CASource) untilRotation() time.Duration {
	s.mu.RLock()
	defer s.mu.RUnlock()
	now := s.cfg.Clock.Now()
	leaf := s.svid.Certificates[0]
	// NotBefore is backdated by a minute; the lifetime counts from issue.
	issued := leaf.NotBefore.Add(time.Minute)
	half := issued.Add(leaf.NotAfter.Sub(issued) / 2)
	d := half.Sub(now)
	if s.failed && (d <= 0 || d > s.cfg.RetryInterval) {
		// Retry soon, and never in a tight loop.
		d = s.cfg.RetryInterval
	}
	if d < 0 {
		d = 0
	}
	return d
}

func (s *CASource) signedByActiveRoot() bool {
	s.mu.RLock()
	leaf := s.svid.Certificates[0]
	s.mu.RUnlock()
	return leaf.CheckSignatureFrom(s.cfg.CA.ActiveRoot()) == nil
}
