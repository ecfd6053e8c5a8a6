package trust

import (
	"testing"
	"time"

	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// TestBundleStoreKeepsDeletedBundle: with KeepDeleted, a bundle whose record
// leaves the list stays trusted for that long, is replaced by a
// republished record as usual, and is withdrawn once the record stays away.
func TestBundleStoreKeepsDeletedBundle(t *testing.T) {
	const keep = 300 * time.Millisecond
	caA, caB := newTestCA(t, "a.test", nil), newTestCA(t, "b.test", nil)
	store, err := NewBundleStore(BundleStoreConfig{TrustDomain: caA.TrustDomain(), Local: caA, KeepDeleted: keep})
	if err != nil {
		t.Fatal(err)
	}
	held := func() bool { _, err := store.GetX509BundleForTrustDomain(caB.TrustDomain()); return err == nil }
	steps := []struct {
		name     string
		list     []*straitv1.TrustBundle
		wantHeld bool
	}{
		{"published", []*straitv1.TrustBundle{caB.TrustBundle(5, 0)}, true},
		{"deleted", nil, true},
		{"republished", []*straitv1.TrustBundle{caB.TrustBundle(6, 0)}, true},
		{"deleted again", nil, true},
	}
	for _, st := range steps {
		if err := store.Sync(st.list); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if held() != st.wantHeld {
			t.Fatalf("%s: held = %v, want %v", st.name, held(), st.wantHeld)
		}
	}
	if seq, _ := store.Sequence(caB.TrustDomain()); seq != 6 {
		t.Fatalf("sequence %d, want the republished 6", seq)
	}
	changed := store.Changed()
	deadline := time.After(5 * time.Second)
	for held() {
		select {
		case <-changed:
			changed = store.Changed()
		case <-deadline:
			t.Fatalf("bundle still held 5s after its record was deleted, KeepDeleted %s", keep)
		}
	}
}
