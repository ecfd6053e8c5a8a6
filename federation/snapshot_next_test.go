package federation

import (
	"slices"
	"testing"
	"time"
)

// TestSnapshotNextRemembersTrustDomain: while a cluster has no gateway
// record (its only gateway died or is restarting), the snapshot that
// follows keeps the trust domain its gateways announced, so an endpoint
// record cannot make the cluster's identity whatever it claims; a gateway
// announcing another trust domain replaces the remembered one; a cluster
// with no record left is forgotten.
func TestSnapshotNextRemembersTrustDomain(t *testing.T) {
	ks := Keyspace{}
	key := ServiceKey{Namespace: "shop", Name: "payments"}
	exp := testExport("west", "shop", "payments", time.Unix(1, 0))
	ep := func(id, spiffe string) Record {
		e := testEndpoint("west", "shop", "payments", id)
		e.SpiffeId = spiffe
		return Record{Key: ks.Endpoint("west", "shop", "payments", id), Message: e}
	}
	genuine := ep("genuine", "spiffe://west.example/ns/shop/sa/payments")
	forged := ep("forged", "spiffe://evil.example/ns/shop/sa/payments")
	gw := func(td string) Record {
		g := testGateway("west", "gw-0")
		g.TrustDomain = td
		return Record{Key: ks.Gateway("west", "gw-0"), Message: g}
	}
	endpointIDs := func(s *Snapshot) []string {
		var out []string
		for _, e := range s.Endpoints("west", key) {
			out = append(out, e.GetId())
		}
		return out
	}

	first := NewSnapshot(1, []Record{gw("west.example"), {Message: exp}, genuine})
	gone := first.Next(2, []Record{{Message: exp}, genuine, forged})
	if got := gone.TrustDomain("west"); got != "west.example" {
		t.Errorf("without a gateway record: trust domain %q, want the remembered west.example", got)
	}
	if got := endpointIDs(gone); !slices.Equal(got, []string{"genuine"}) {
		t.Errorf("without a gateway record: endpoints %v, want [genuine] (the forged trust domain rejected)", got)
	}
	// Without memory the forged record would be admitted and could even
	// name the cluster's trust domain: NewSnapshot has nothing to judge by.
	if got := endpointIDs(NewSnapshot(2, []Record{{Message: exp}, genuine, forged})); len(got) != 2 {
		t.Fatalf("fresh snapshot admits %v; this test assumes both are admitted without a known trust domain", got)
	}

	// Remembered across several snapshots, not only the next one.
	still := gone.Next(3, []Record{{Message: exp}, genuine})
	if got := still.TrustDomain("west"); got != "west.example" {
		t.Errorf("two snapshots later: trust domain %q, want west.example", got)
	}
	moved := still.Next(4, []Record{gw("west2.example"), {Message: exp}, genuine})
	if got := moved.TrustDomain("west"); got != "west2.example" {
		t.Errorf("after a gateway announced west2.example: trust domain %q", got)
	}
	forgotten := still.Next(5, nil).Next(6, []Record{{Message: exp}})
	if got := forgotten.TrustDomain("west"); got != "" {
		t.Errorf("after every record of west went: trust domain %q, want none", got)
	}
}

// TestExportersIgnoresLiveness: who may serve a service follows its
// exports, while Service's Clusters lists only exporters with a live
// gateway (those the egress routes to).
func TestExportersIgnoresLiveness(t *testing.T) {
	key := ServiceKey{Namespace: "shop", Name: "payments"}
	snap := NewSnapshot(1, []Record{
		{Message: testGateway("central", "gw-0")},
		{Message: testExport("west", "shop", "payments", time.Unix(1, 0))},
		{Message: testExport("central", "shop", "payments", time.Unix(2, 0))},
	})
	if got := snap.Exporters(key); !slices.Equal(got, []string{"west", "central"}) {
		t.Errorf("Exporters = %v, want [west central]", got)
	}
	svc, _ := snap.Service(key)
	if !slices.Equal(svc.Clusters, []string{"central"}) {
		t.Errorf("Service.Clusters = %v, want [central]", svc.Clusters)
	}
	if got := snap.Exporters(ServiceKey{Namespace: "shop", Name: "none"}); len(got) != 0 {
		t.Errorf("Exporters of an unexported service = %v", got)
	}
}
