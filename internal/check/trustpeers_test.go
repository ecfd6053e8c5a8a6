package check

import (
	"strings"
	"testing"

	"github.com/strait-mesh/strait/gateway"
)

func TestCompareRoots(t *testing.T) {
	current := []string{"aa", "cc"}
	view := func(domains ...gateway.TrustDomainView) *gateway.TrustView {
		return &gateway.TrustView{Cluster: "west", Gateway: "gw-0", Revision: 42, Domains: domains}
	}
	tests := []struct {
		name string
		view *gateway.TrustView
		want Status
		says string
	}{
		{"the current roots", view(gateway.TrustDomainView{TrustDomain: "east.test", Sequence: 3, Roots: []string{"aa", "cc"}}), OK, ""},
		{"unknown trust domain", view(gateway.TrustDomainView{TrustDomain: "other.test", Roots: []string{"aa"}}), Fail, "does not know trust domain east.test"},
		{"no roots", view(gateway.TrustDomainView{TrustDomain: "east.test", Roots: []string{}, Error: "no bundle"}), Fail, "holds no root for east.test: no bundle"},
		{"an old bundle", view(gateway.TrustDomainView{TrustDomain: "east.test", Sequence: 2, Roots: []string{"aa", "bb"}}), Fail, "lacks 1 of 2 current roots (sequence 2 in its view, 3 in etcd)"},
		{"a retired root still trusted", view(gateway.TrustDomainView{TrustDomain: "east.test", Sequence: 3, Roots: []string{"aa", "bb", "cc"}}), Warn, "also trusts 1 root(s)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, msg := compareRoots(current, 3, "east.test", tc.view)
			if got != tc.want || !strings.Contains(msg, tc.says) {
				t.Fatalf("compareRoots: %s %q, want %s saying %q", got, msg, tc.want, tc.says)
			}
		})
	}
}
