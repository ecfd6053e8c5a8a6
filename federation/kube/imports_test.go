package kube

import (
	"net/netip"
	"testing"

	"github.com/strait-mesh/strait/federation"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// TestDesiredSlices: one slice per address family and egress port, UDP
// ports left out (the egress carries TCP), duplicate addresses merged.
func TestDesiredSlices(t *testing.T) {
	gs := federation.GlobalService{
		Key: federation.ServiceKey{Namespace: "shop", Name: "cart"},
		Ports: []*straitv1.ServicePort{
			{Name: "http", Port: 80, Protocol: straitv1.Protocol_PROTOCOL_TCP},
			{Name: "dns", Port: 53, Protocol: straitv1.Protocol_PROTOCOL_UDP},
		},
	}
	egress := []egressAddr{
		{ip: netip.MustParseAddr("10.0.0.2"), port: 15444},
		{ip: netip.MustParseAddr("10.0.0.1"), port: 15444},
		{ip: netip.MustParseAddr("10.0.0.1"), port: 15444},
		{ip: netip.MustParseAddr("fd00::1"), port: 15444},
		{ip: netip.MustParseAddr("10.0.0.3"), port: 16000},
	}
	got := desiredSlices(gs, "derived-cart", egress)
	want := map[string][]string{
		"derived-cart-ipv4-15444": {"10.0.0.1", "10.0.0.2"},
		"derived-cart-ipv4-16000": {"10.0.0.3"},
		"derived-cart-ipv6-15444": {"fd00::1"},
	}
	if len(got) != len(want) {
		t.Fatalf("%d slices, want %d", len(got), len(want))
	}
	for _, s := range got {
		addrs, ok := want[s.Name]
		if !ok {
			t.Errorf("unexpected slice %s", s.Name)
			continue
		}
		if len(s.Endpoints) != len(addrs) {
			t.Errorf("%s: endpoints %+v, want %v", s.Name, s.Endpoints, addrs)
			continue
		}
		for i, a := range addrs {
			if s.Endpoints[i].Addresses[0] != a {
				t.Errorf("%s: endpoint %d = %s, want %s", s.Name, i, s.Endpoints[i].Addresses[0], a)
			}
		}
		if len(s.Ports) != 1 || *s.Ports[0].Name != "http" {
			t.Errorf("%s: ports %+v, want http only", s.Name, s.Ports)
		}
		if s.Labels[LabelKubeServiceName] != "derived-cart" || s.Labels[LabelServiceName] != "cart" || s.Labels[LabelManagedBy] != ManagedBy {
			t.Errorf("%s: labels %v", s.Name, s.Labels)
		}
	}
}
