package gateway

import (
	"encoding/json"
	"net/http"
	"slices"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// TestTrustView: /trust lists, for every trust domain of the federation,
// the fingerprints of the roots the gateway verifies it with, and says so
// when it holds none.
func TestTrustView(t *testing.T) {
	w, a, _ := twoClusters(t)
	want := func(c string) []string {
		var fps []string
		for _, r := range w.cas[c].Bundle().X509Authorities() {
			fps = append(fps, RootFingerprint(r))
		}
		slices.Sort(fps)
		return fps
	}
	read := func() TrustView {
		code, body := get(t, a, "/trust")
		if code != http.StatusOK {
			t.Fatalf("/trust: %d %s", code, body)
		}
		var v TrustView
		if err := json.Unmarshal([]byte(body), &v); err != nil {
			t.Fatalf("/trust: %v: %s", err, body)
		}
		return v
	}
	v := read()
	if v.Cluster != "a" || v.Gateway != "a1" || len(v.Domains) != 2 {
		t.Fatalf("/trust: %+v, want cluster a, gateway a1 and two domains", v)
	}
	for i, c := range []string{"a", "b"} {
		d := v.Domains[i]
		if d.TrustDomain != c+".test" || !slices.Equal(d.Clusters, []string{c}) || !slices.Equal(d.Roots, want(c)) || d.Error != "" {
			t.Errorf("domain %d: %+v, want %s.test of cluster %s with roots %v", i, d, c, c, want(c))
		}
	}
	w.bundles.Remove(spiffeid.RequireTrustDomainFromString("b.test"))
	v = read()
	if d := v.Domains[1]; d.TrustDomain != "b.test" || len(d.Roots) != 0 || d.Error == "" {
		t.Errorf("b.test without a bundle: %+v, want no roots and an error", d)
	}
}
