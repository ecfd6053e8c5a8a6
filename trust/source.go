package trust

import (
	"context"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Source is where a gateway or proxy gets its X.509 SVID and the bundle of
// its own trust domain: the built-in CA (CASource) or the SPIRE Workload API
// (WorkloadSource). Pass it as TLSConfig.SVID, and as BundleStoreConfig.Local
// so that federated bundles sit beside its own.
type Source interface {
	// GetX509SVID returns the current SVID; ErrNotReady before the first.
	x509svid.Source
	// GetX509BundleForTrustDomain returns the bundle of a trust domain the
	// source knows (at least its own).
	x509bundle.Source
	// Changed returns a channel closed at the next change of the SVID or of
	// the bundles.
	Changed() <-chan struct{}
	// Run keeps the SVID current until ctx is done, then returns ctx.Err().
	Run(ctx context.Context) error
}
