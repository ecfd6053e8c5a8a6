package check

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

func TestStaleRecords(t *testing.T) {
	now := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	gw := func(id, ingress, egress, admin string, started time.Time) *straitv1.Gateway {
		g := &straitv1.Gateway{Cluster: "west", Id: id, Address: ingress, EgressAddress: egress, AdminAddress: admin}
		if !started.IsZero() {
			g.StartedAt = timestamppb.New(started)
		}
		return g
	}
	early, late := now.Add(-time.Hour), now.Add(-time.Minute)
	type want struct {
		gateway string
		says    []string
	}
	tests := []struct {
		name string
		gws  []*straitv1.Gateway
		want []want
	}{
		{"distinct records", []*straitv1.Gateway{
			gw("gw-0", "10.0.0.1:4433", "10.0.0.1:15001", "10.0.0.1:9901", early),
			gw("gw-1", "10.0.0.2:4433", "10.0.0.2:15001", "10.0.0.2:9901", late),
		}, nil},
		{"replicas behind one load balancer", []*straitv1.Gateway{
			gw("gw-0", "lb:4433", "10.0.0.1:15001", "10.0.0.1:9901", early),
			gw("gw-1", "lb:4433", "10.0.0.2:15001", "10.0.0.2:9901", late),
		}, []want{{"gw-1", []string{"gw-0 and gw-1", "same ingress address lb:4433"}}}},
		{"restarted under a new ID: the older record is stale", []*straitv1.Gateway{
			gw("gw-new", "10.0.0.1:4433", "10.0.0.1:15001", "10.0.0.1:9901", late),
			gw("gw-old", "10.0.0.1:4433", "10.0.0.1:15001", "10.0.0.1:9901", early),
		}, []want{{"gw-old", []string{"gw-old of west is probably stale", "ingress 10.0.0.1:4433, egress 10.0.0.1:15001 and admin 10.0.0.1:9901", "with gw-new"}}}},
		{"shared admin address, same start: conflict", []*straitv1.Gateway{
			gw("gw-0", "10.0.0.1:4433", "10.0.0.1:15001", "10.0.0.1:9901", early),
			gw("gw-1", "10.0.0.2:4433", "10.0.0.2:15001", "10.0.0.1:9901", early),
		}, []want{{"gw-1", []string{"gw-0 and gw-1 of west conflict", "admin 10.0.0.1:9901"}}}},
		{"replicas listening on every interface", []*straitv1.Gateway{
			gw("gw-0", "10.0.0.1:4433", "[::]:15001", "[::]:9901", early),
			gw("gw-1", "10.0.0.2:4433", "[::]:15001", "[::]:9901", late),
		}, nil},
		{"replicas with loopback admin ports", []*straitv1.Gateway{
			gw("gw-0", "10.0.0.1:4433", "10.0.0.1:15001", "127.0.0.1:9901", early),
			gw("gw-1", "10.0.0.2:4433", "10.0.0.2:15001", "127.0.0.1:9901", late),
		}, nil},
		{"no started_at", []*straitv1.Gateway{
			gw("gw-0", "10.0.0.1:4433", "", "", time.Time{}),
		}, []want{{"gw-0", []string{"no started_at"}}}},
		{"started_at in the future", []*straitv1.Gateway{
			gw("gw-0", "10.0.0.1:4433", "", "", now.Add(2*clockSkew)),
			gw("gw-1", "10.0.0.2:4433", "", "", now.Add(clockSkew/2)),
		}, []want{{"gw-0", []string{"is in the future"}}}},
		{"empty addresses are not shared", []*straitv1.Gateway{
			gw("gw-0", "10.0.0.1:4433", "", "", early),
			gw("gw-1", "10.0.0.2:4433", "", "", late),
		}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := staleRecords(tc.gws, now)
			if len(got) != len(tc.want) {
				t.Fatalf("%d findings, want %d: %+v", len(got), len(tc.want), got)
			}
			for i, w := range tc.want {
				r := got[i]
				if r.Status != Warn || r.Category != CategoryGateways || r.Gateway != w.gateway || r.Hint == "" {
					t.Errorf("finding %d: %+v, want a warn with a hint about %s", i, r, w.gateway)
				}
				for _, s := range w.says {
					if !strings.Contains(r.Message, s) {
						t.Errorf("finding %d: message %q does not say %q", i, r.Message, s)
					}
				}
			}
		})
	}
}
