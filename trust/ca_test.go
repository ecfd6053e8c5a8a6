package trust

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

func TestCAKeepsRootOnDisk(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	ca1, err := NewCA(CAConfig{TrustDomain: td(t, "a.test"), Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(dir, "root-*.pem"))
	if err != nil || len(files) != 1 {
		t.Fatalf("root files = %v (%v), want 1", files, err)
	}
	for _, f := range append(files, filepath.Join(dir, caStateFile)) {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", f, fi.Mode().Perm())
		}
	}
	ca2, err := NewCA(CAConfig{TrustDomain: td(t, "a.test"), Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if !ca2.ActiveRoot().Equal(ca1.ActiveRoot()) {
		t.Fatal("a second CA on the same directory made a new root")
	}
	// An SVID from the reloaded CA verifies against the first CA's bundle.
	svid := issue(t, ca2, "spiffe://a.test/ns/x/sa/y")
	if err := svid.Certificates[0].CheckSignatureFrom(ca1.ActiveRoot()); err != nil {
		t.Fatal(err)
	}
}

func TestCARotationPersists(t *testing.T) {
	dir := t.TempDir()
	clock := clockwork.NewFakeClockAt(time.Now())
	ca, err := NewCA(CAConfig{TrustDomain: td(t, "a.test"), Dir: dir, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	old := ca.ActiveRoot()
	issue(t, ca, "spiffe://a.test/ns/x/sa/y")
	next, err := ca.PrepareRoot()
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.ActivateRoot(); err != nil {
		t.Fatal(err)
	}
	// A restart in the middle of the rotation keeps both roots, the new one
	// active, and still refuses to drop the old one early.
	re, err := NewCA(CAConfig{TrustDomain: td(t, "a.test"), Dir: dir, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if got := re.Roots(); len(got) != 2 || !re.ActiveRoot().Equal(next) {
		t.Fatalf("reloaded %d roots, active new = %v", len(got), re.ActiveRoot().Equal(next))
	}
	if err := re.DropRoot(old); !errors.Is(err, ErrRootInUse) {
		t.Fatalf("drop after restart: got %v, want ErrRootInUse", err)
	}
	clock.Advance(2*DefaultSVIDTTL + time.Second) // past the persisted bound
	if err := re.DropRoot(old); err != nil {
		t.Fatal(err)
	}
	re2, err := NewCA(CAConfig{TrustDomain: td(t, "a.test"), Dir: dir, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if got := re2.Roots(); len(got) != 1 || !got[0].Equal(next) {
		t.Fatalf("after drop and reload: %d roots", len(got))
	}
}

func TestCARootRotationRules(t *testing.T) {
	// Whole seconds: certificates keep NotAfter to the second.
	clock := clockwork.NewFakeClockAt(time.Now().Truncate(time.Second))
	ca := newTestCA(t, "a.test", clock.Now)
	old := ca.ActiveRoot()
	if err := ca.ActivateRoot(); !errors.Is(err, ErrNoPreparedRoot) {
		t.Fatalf("activate without prepare: %v", err)
	}
	svidOld := issue(t, ca, "spiffe://a.test/ns/x/sa/y")

	changed := ca.Changed()
	next, err := ca.PrepareRoot()
	if err != nil {
		t.Fatal(err)
	}
	<-changed
	if _, err := ca.PrepareRoot(); !errors.Is(err, ErrRootPending) {
		t.Fatalf("second prepare: %v", err)
	}
	// Prepared: published beside the old root, but signs nothing.
	if roots := ca.Roots(); len(roots) != 2 || !ca.Bundle().HasX509Authority(next) {
		t.Fatalf("prepared root not in the bundle")
	}
	if err := issue(t, ca, "spiffe://a.test/ns/x/sa/y").Certificates[0].CheckSignatureFrom(old); err != nil {
		t.Fatalf("prepared root signs before activation: %v", err)
	}
	if err := ca.ActivateRoot(); err != nil {
		t.Fatal(err)
	}
	if err := issue(t, ca, "spiffe://a.test/ns/x/sa/y").Certificates[0].CheckSignatureFrom(next); err != nil {
		t.Fatalf("active root does not sign: %v", err)
	}
	if err := ca.DropRoot(next); !errors.Is(err, ErrRootActive) {
		t.Fatalf("drop active: %v", err)
	}
	if err := ca.DropRoot(newTestCA(t, "a.test", nil).ActiveRoot()); !errors.Is(err, ErrUnknownRoot) {
		t.Fatalf("drop unknown: %v", err)
	}
	err = ca.DropRoot(old)
	var inUse *RootInUseError
	if !errors.As(err, &inUse) || !errors.Is(err, ErrRootInUse) {
		t.Fatalf("drop with live SVIDs: got %v, want *RootInUseError", err)
	}
	t.Logf("refused: %v", err)
	// The latest SVID the old root signed was issued after svidOld, at the
	// same fake time: the bound is its NotAfter.
	if !inUse.Until.Equal(svidOld.Certificates[0].NotAfter) {
		t.Errorf("Until = %v, want %v", inUse.Until, svidOld.Certificates[0].NotAfter)
	}
	clock.Advance(DefaultSVIDTTL)
	if err := ca.DropRoot(old); !errors.Is(err, ErrRootInUse) {
		t.Fatalf("drop at the exact expiry: %v", err)
	}
	clock.Advance(time.Second)
	if err := ca.DropRoot(old); err != nil {
		t.Fatalf("drop after expiry: %v", err)
	}
	if roots := ca.Roots(); len(roots) != 1 || !roots[0].Equal(next) {
		t.Fatalf("roots after drop: %d", len(roots))
	}
}

func TestCAConfigValidation(t *testing.T) {
	_, err := NewCA(CAConfig{RootTTL: -1})
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	t.Log(err)
}

func TestCARefusesToIssueWithExpiredRoot(t *testing.T) {
	clock := clockwork.NewFakeClockAt(time.Now().Truncate(time.Second))
	ca, err := NewCA(CAConfig{TrustDomain: td(t, "a.test"), RootTTL: 2 * time.Hour, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	clock.Advance(90 * time.Minute)
	svid := issue(t, ca, "spiffe://a.test/x") // capped at the root's expiry
	if got := svid.Certificates[0].NotAfter; !got.Equal(ca.ActiveRoot().NotAfter) {
		t.Errorf("SVID outlives its root: %s > %s", got, ca.ActiveRoot().NotAfter)
	}
	clock.Advance(time.Hour)
	if _, err := ca.IssueX509SVID(id(t, "spiffe://a.test/x"), 0); !errors.Is(err, ErrRootExpired) {
		t.Fatalf("got %v, want ErrRootExpired", err)
	}
}

// TestCAConcurrentCreatorsShareOneRoot starts CAs on one empty directory at
// once, as the gateway replicas and sidecars of a node do on the CA
// directory they mount from the host: they must end with one root between
// them. Without the directory lock each created its own root, and the
// trust domain's bundle in etcd then flipped between the two every second
// (each publisher repairing the other's), failing every handshake signed by
// the root not published at that moment.
func TestCAConcurrentCreatorsShareOneRoot(t *testing.T) {
	for round := range 20 {
		dir := filepath.Join(t.TempDir(), "ca")
		const n = 8
		cas := make([]*CA, n)
		errs := make([]error, n)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				<-start
				cas[i], errs[i] = NewCA(CAConfig{TrustDomain: td(t, "a.test"), Dir: dir})
			})
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d: CA %d: %v", round, i, err)
			}
		}
		want := cas[0].ActiveRoot()
		for i, ca := range cas[1:] {
			if got := ca.ActiveRoot(); !got.Equal(want) {
				t.Fatalf("round %d: CA %d signs with root %x, CA 0 with %x: processes sharing %s made different roots",
					round, i+1, got.SerialNumber, want.SerialNumber, dir)
			}
		}
		files, _ := filepath.Glob(filepath.Join(dir, "root-*.pem"))
		if len(files) != 1 {
			t.Fatalf("round %d: %d root files in %s, want 1", round, len(files), dir)
		}
	}
}
