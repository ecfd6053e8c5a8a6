package trust

import (
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/proto"

	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

func TestBundleStoreRefusesSequenceGoingBackwards(t *testing.T) {
	caA, caB := newTestCA(t, "a.test", nil), newTestCA(t, "b.test", nil)
	m := newMetrics(t)
	store := newStore(t, caA, m)
	if err := store.Apply(caB.TrustBundle(5, time.Minute)); err != nil {
		t.Fatal(err)
	}
	oldRoot := caB.ActiveRoot()
	if _, err := caB.PrepareRoot(); err != nil {
		t.Fatal(err)
	}
	newer := caB.TrustBundle(4, time.Minute) // more roots, lower sequence
	err := store.Apply(newer)
	if !errors.Is(err, ErrStaleBundle) {
		t.Fatalf("sequence 4 after 5: got %v, want ErrStaleBundle", err)
	}
	t.Logf("refused: %v", err)
	if err := store.Apply(caB.TrustBundle(5, time.Minute)); !errors.Is(err, ErrStaleBundle) {
		t.Fatalf("sequence 5 again with other authorities: got %v, want ErrStaleBundle", err)
	}
	b, err := store.GetX509BundleForTrustDomain(caB.TrustDomain())
	if err != nil {
		t.Fatal(err)
	}
	if auth := b.X509Authorities(); len(auth) != 1 || !auth[0].Equal(oldRoot) {
		t.Fatalf("held bundle changed after refusals: %d authorities", len(auth))
	}
	if err := store.Apply(caB.TrustBundle(6, time.Minute)); err != nil {
		t.Fatalf("sequence 6: %v", err)
	}
	if err := store.Apply(caB.TrustBundle(6, time.Minute)); err != nil {
		t.Fatalf("sequence 6 again, same authorities: %v", err)
	}
	if seq, _ := store.Sequence(caB.TrustDomain()); seq != 6 {
		t.Errorf("sequence = %d, want 6", seq)
	}
	if got := testutil.ToFloat64(m.bundleUpdates.WithLabelValues("b.test", resultStale)); got != 2 {
		t.Errorf("stale updates = %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.bundleSequence.WithLabelValues("b.test")); got != 6 {
		t.Errorf("strait_trust_bundle_sequence = %v, want 6", got)
	}
}

func TestBundleStoreRemovedBundleCannotComeBackOlder(t *testing.T) {
	caA, caB := newTestCA(t, "a.test", nil), newTestCA(t, "b.test", nil)
	store := newStore(t, caA, nil)
	if err := store.Sync([]*straitv1.TrustBundle{caB.TrustBundle(3, 0)}); err != nil {
		t.Fatal(err)
	}
	if err := store.Sync(nil); err != nil {
		t.Fatal(err)
	}
	if _, err := store.GetX509BundleForTrustDomain(caB.TrustDomain()); err == nil {
		t.Fatal("bundle of b still held after it left the list")
	}
	if err := store.Sync([]*straitv1.TrustBundle{caB.TrustBundle(2, 0)}); !errors.Is(err, ErrStaleBundle) {
		t.Fatalf("older bundle after removal: got %v, want ErrStaleBundle", err)
	}
	// The local bundle is always there.
	if _, err := store.GetX509BundleForTrustDomain(caA.TrustDomain()); err != nil {
		t.Fatal(err)
	}
}

func TestBundleStoreRefusesNonCAAuthorities(t *testing.T) {
	caA, caB := newTestCA(t, "a.test", nil), newTestCA(t, "b.test", nil)
	store := newStore(t, caA, nil)
	leaf := issue(t, caB, "spiffe://b.test/ns/x/sa/y").Certificates[0]
	rec := &straitv1.TrustBundle{TrustDomain: "b.test", Sequence: 1, X509Authorities: [][]byte{leaf.Raw}}
	err := store.Apply(rec)
	if !errors.Is(err, ErrNotCA) {
		t.Fatalf("got %v, want ErrNotCA", err)
	}
	t.Logf("refused: %v", err)
	for name, bad := range map[string]*straitv1.TrustBundle{
		"no authority": {TrustDomain: "b.test", Sequence: 1},
		"garbage DER":  {TrustDomain: "b.test", Sequence: 1, X509Authorities: [][]byte{{0x30, 0x03, 0x02, 0x01, 0x01}}},
		"bad domain":   {TrustDomain: "B_TEST!", Sequence: 1, X509Authorities: [][]byte{caB.ActiveRoot().Raw}},
		"empty domain": {Sequence: 1, X509Authorities: [][]byte{caB.ActiveRoot().Raw}},
		"nil record":   nil,
		"too many CAs": {TrustDomain: "b.test", Sequence: 1, X509Authorities: repeat(caB.ActiveRoot().Raw, MaxBundleAuthorities+1)},
	} {
		if err := store.Apply(bad); !errors.Is(err, ErrInvalidBundle) {
			t.Errorf("%s: got %v, want ErrInvalidBundle", name, err)
		}
	}
	if _, err := store.GetX509BundleForTrustDomain(caB.TrustDomain()); err == nil {
		t.Error("an invalid record was stored")
	}
}

func repeat(b []byte, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = b
	}
	return out
}

func TestBundleStoreAllowList(t *testing.T) {
	caA, caB, caC := newTestCA(t, "a.test", nil), newTestCA(t, "b.test", nil), newTestCA(t, "c.test", nil)
	store := newStore(t, caA, nil, caB.TrustDomain())
	if err := store.Apply(caC.TrustBundle(1, 0)); !errors.Is(err, ErrNotFederated) {
		t.Fatalf("c not in the allow-list: got %v, want ErrNotFederated", err)
	}
	// A record for the local trust domain never replaces the local source.
	rogue := newTestCA(t, "a.test", nil)
	if err := store.Apply(rogue.TrustBundle(99, 0)); !errors.Is(err, ErrNotFederated) {
		t.Fatalf("record of the local domain: got %v, want ErrNotFederated", err)
	}
	err := store.Sync([]*straitv1.TrustBundle{caB.TrustBundle(1, 0), caC.TrustBundle(1, 0), rogue.TrustBundle(99, 0)})
	if err != nil {
		t.Fatalf("Sync with ignored records: %v", err)
	}
	got := store.TrustDomains()
	want := []spiffeid.TrustDomain{caA.TrustDomain(), caB.TrustDomain()}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("trust domains = %v, want %v", got, want)
	}
	local, err := store.GetX509BundleForTrustDomain(caA.TrustDomain())
	if err != nil || !local.Equal(caA.Bundle()) {
		t.Fatalf("local bundle replaced: %v", err)
	}
}

func TestBundleStoreNotifiesChanges(t *testing.T) {
	caA, caB := newTestCA(t, "a.test", nil), newTestCA(t, "b.test", nil)
	store := newStore(t, caA, nil)
	changed := store.Changed()
	if err := store.Apply(caB.TrustBundle(1, 0)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	default:
		t.Fatal("no change notification after Apply")
	}
	changed = store.Changed()
	if err := store.Apply(caB.TrustBundle(1, 0)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
		t.Fatal("notification for an unchanged bundle")
	default:
	}
}

func TestBundleProtoRoundTrip(t *testing.T) {
	ca := newTestCA(t, "b.test", nil)
	if _, err := ca.PrepareRoot(); err != nil {
		t.Fatal(err)
	}
	rec := ca.TrustBundle(7, 30*time.Second)
	data, err := proto.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	got, b, err := UnmarshalBundle(data)
	if err != nil {
		t.Fatal(err)
	}
	if got.GetSequence() != 7 || got.GetRefreshHint().AsDuration() != 30*time.Second || got.GetUpdatedAt() == nil {
		t.Errorf("record = %v", got)
	}
	if !b.Equal(ca.Bundle()) {
		t.Error("authorities differ after a round trip")
	}
}

func TestBundleStoreConfigValidation(t *testing.T) {
	_, err := NewBundleStore(BundleStoreConfig{Federates: []spiffeid.TrustDomain{{}}})
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	t.Log(err)
}
