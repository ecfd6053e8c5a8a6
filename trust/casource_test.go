package trust

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// runSource runs src until the test ends and checks that Run returns
// ctx.Err().
func runSource(t *testing.T, src Source) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v, want context.Canceled", err)
		}
	})
}

func waitChanged(t *testing.T, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("no change notification")
	}
}

func TestCASourceRotatesAtHalfLife(t *testing.T) {
	clock := clockwork.NewFakeClockAt(time.Now().Truncate(time.Second))
	ca := newTestCA(t, "a.test", clock.Now)
	m := newMetrics(t)
	src, err := NewCASource(CASourceConfig{CA: ca, ID: id(t, "spiffe://a.test/ns/x/sa/y"), Clock: clock, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	first, err := src.GetX509SVID()
	if err != nil {
		t.Fatal(err)
	}
	if ttl := first.Certificates[0].NotAfter.Sub(clock.Now()); ttl != DefaultSVIDTTL {
		t.Errorf("TTL = %s, want %s", ttl, DefaultSVIDTTL)
	}
	runSource(t, src)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	changed := src.Changed()
	clock.Advance(DefaultSVIDTTL/2 - time.Second)
	select {
	case <-changed:
		t.Fatal("rotated before half life")
	default:
	}
	clock.Advance(time.Second)
	waitChanged(t, changed)
	second, _ := src.GetX509SVID()
	if second.Certificates[0].SerialNumber.Cmp(first.Certificates[0].SerialNumber) == 0 {
		t.Fatal("same SVID after half life")
	}
	if got := testutil.ToFloat64(m.svidRotations.WithLabelValues("spiffe://a.test/ns/x/sa/y")); got != 2 {
		t.Errorf("rotations = %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.svidExpiry.WithLabelValues("spiffe://a.test/ns/x/sa/y")); got != float64(second.Certificates[0].NotAfter.Unix()) {
		t.Errorf("expiry metric = %v", got)
	}
}

func TestCASourceRotatesOnRootActivation(t *testing.T) {
	clock := clockwork.NewFakeClockAt(time.Now().Truncate(time.Second))
	ca := newTestCA(t, "a.test", clock.Now)
	src, err := NewCASource(CASourceConfig{CA: ca, ID: id(t, "spiffe://a.test/ns/x/sa/y"), Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	runSource(t, src)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	changed := src.Changed()
	next, err := ca.PrepareRoot()
	if err != nil {
		t.Fatal(err)
	}
	waitChanged(t, changed) // the bundle changed
	svid, _ := src.GetX509SVID()
	if svid.Certificates[0].CheckSignatureFrom(next) == nil {
		t.Fatal("SVID signed by a root that is only prepared")
	}
	b, _ := src.GetX509BundleForTrustDomain(ca.TrustDomain())
	if !b.HasX509Authority(next) {
		t.Fatal("prepared root not in the source's bundle")
	}
	changed = src.Changed()
	if err := ca.ActivateRoot(); err != nil {
		t.Fatal(err)
	}
	waitChanged(t, changed)
	svid, _ = src.GetX509SVID()
	if err := svid.Certificates[0].CheckSignatureFrom(next); err != nil {
		t.Fatalf("SVID not re-signed by the activated root: %v", err)
	}
}

func TestCASourceConfigValidation(t *testing.T) {
	ca := newTestCA(t, "a.test", nil)
	_, err := NewCASource(CASourceConfig{CA: ca, ID: id(t, "spiffe://b.test/x"), TTL: -1})
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	t.Log(err)
}
