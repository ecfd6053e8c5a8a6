package trust

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// WorkloadSourceConfig configures a WorkloadSource.
type WorkloadSourceConfig struct {
	// Addr is the SPIRE agent's Workload API address, e.g.
	// "unix:///run/spire/agent.sock". Zero means the SPIFFE_ENDPOINT_SOCKET
	// environment variable.
	Addr string
	// Logger logs updates. Zero means slog.Default().
	Logger *slog.Logger
	// Metrics records SVID expiry and rotations. Zero means no metrics.
	Metrics *Metrics
}

// WorkloadSource is a Source of SVIDs and bundles from the SPIRE Workload
// API (go-spiffe's workloadapi.X509Source), which the SPIRE agent rotates.
// Until Run has received the first update, GetX509SVID returns ErrNotReady.
// It is safe for concurrent use.
type WorkloadSource struct {
	cfg     WorkloadSourceConfig
	changed notifier
	ready   chan struct{}

	mu  sync.RWMutex
	src *workloadapi.X509Source // nil until ready and after Run returns
}

// NewWorkloadSource creates a source; Run connects it.
func NewWorkloadSource(cfg WorkloadSourceConfig) *WorkloadSource {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &WorkloadSource{cfg: cfg, ready: make(chan struct{})}
}

// Ready returns a channel closed once the first SVID has arrived.
func (s *WorkloadSource) Ready() <-chan struct{} { return s.ready }

// WaitReady waits until the first SVID has arrived or ctx is done.
func (s *WorkloadSource) WaitReady(ctx context.Context) error {
	select {
	case <-s.ready:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("trust: waiting for the Workload API: %w", ctx.Err())
	}
}

// Changed returns a channel closed at the next update from the Workload API.
func (s *WorkloadSource) Changed() <-chan struct{} { return s.changed.Changed() }

func (s *WorkloadSource) current() *workloadapi.X509Source {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.src
}

// GetX509SVID implements x509svid.Source.
func (s *WorkloadSource) GetX509SVID() (*x509svid.SVID, error) {
	src := s.current()
	if src == nil {
		return nil, ErrNotReady
	}
	svid, err := src.GetX509SVID()
	if err != nil {
		return nil, fmt.Errorf("trust: workload API SVID: %w", err)
	}
	return svid, nil
}

// GetX509BundleForTrustDomain implements x509bundle.Source with the bundles
// the Workload API delivers (the agent's own trust domain, and those its
// registration entry federates with). A missing trust domain is an
// *UnknownTrustDomainError.
func (s *WorkloadSource) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	src := s.current()
	if src == nil {
		return nil, ErrNotReady
	}
	b, err := src.GetX509BundleForTrustDomain(td)
	if err != nil {
		// The X509Source is open (Run closes it after clearing s.src), so
		// its only failure is a missing trust domain.
		return nil, &UnknownTrustDomainError{TrustDomain: td}
	}
	return b, nil
}

// Run connects to the Workload API, waits for the first SVID and follows
// updates until ctx is done; it returns ctx.Err(). It may be called once.
func (s *WorkloadSource) Run(ctx context.Context) error {
	var opts []workloadapi.X509SourceOption
	if s.cfg.Addr != "" {
		opts = append(opts, workloadapi.WithClientOptions(workloadapi.WithAddr(s.cfg.Addr)))
	}
	src, err := workloadapi.NewX509Source(ctx, opts...)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("trust: workload API source: %w", err)
	}
	defer func() {
		s.mu.Lock()
		s.src = nil
		s.mu.Unlock()
		_ = src.Close()
	}()
	s.mu.Lock()
	s.src = src
	s.mu.Unlock()
	s.observe(src)
	close(s.ready)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-src.Updated():
			s.observe(src)
		}
	}
}

func (s *WorkloadSource) observe(src *workloadapi.X509Source) {
	svid, err := src.GetX509SVID()
	if err == nil {
		leaf := svid.Certificates[0]
		s.cfg.Metrics.observeSVID(svid.ID.String(), float64(leaf.NotAfter.Unix()))
		s.cfg.Logger.Debug("SVID from the workload API", logKeySPIFFEID, svid.ID.String(), logKeyNotAfter, leaf.NotAfter)
	}
	s.changed.notify()
}
