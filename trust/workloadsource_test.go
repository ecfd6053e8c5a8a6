package trust

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

func TestWorkloadSourceNotReadyUntilRun(t *testing.T) {
	src := NewWorkloadSource(WorkloadSourceConfig{Addr: "unix://" + filepath.Join(t.TempDir(), "none.sock")})
	if _, err := src.GetX509SVID(); !errors.Is(err, ErrNotReady) {
		t.Fatalf("GetX509SVID before Run: %v", err)
	}
	if _, err := src.GetX509BundleForTrustDomain(td(t, "a.test")); !errors.Is(err, ErrNotReady) {
		t.Fatalf("bundle before Run: %v", err)
	}
	// No agent listens: Run keeps trying until its context ends, and
	// returns the context's error.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := src.Run(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Run returned %v, want context.DeadlineExceeded", err)
	}
	select {
	case <-src.Ready():
		t.Fatal("ready without an SVID")
	default:
	}
}
