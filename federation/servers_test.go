package federation

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/proto"

	"github.com/strait-mesh/strait/internal/etcdtest"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

func TestServerPolicy(t *testing.T) {
	west := spiffeid.RequireTrustDomainFromString("west.example")
	tests := []struct {
		policy ServerPolicy
		id     string
		want   string // "" allowed, else a substring of the refusal
	}{
		{ServerPolicy{TrustDomain: west, Namespace: "shop"}, "spiffe://west.example/ns/shop/sa/anything", ""},
		{ServerPolicy{TrustDomain: west, Namespace: "shop", ServiceAccounts: []string{"api", "worker"}}, "spiffe://west.example/ns/shop/sa/worker", ""},
		{ServerPolicy{Namespace: "shop"}, "spiffe://any.example/ns/shop/sa/api", ""}, // trust domain not known: not checked
		{ServerPolicy{TrustDomain: west, Namespace: "shop", ServiceAccounts: []string{"api"}}, "spiffe://west.example/ns/shop/sa/worker", "service account worker"},
		{ServerPolicy{TrustDomain: west, Namespace: "shop"}, "spiffe://east.example/ns/shop/sa/api", "trust domain east.example"},
		{ServerPolicy{TrustDomain: west, Namespace: "shop"}, "spiffe://west.example/ns/other/sa/api", "namespace other"},
		{ServerPolicy{TrustDomain: west, Namespace: "shop"}, "spiffe://west.example/strait/gateway/west", "not a workload ID"},
		{ServerPolicy{TrustDomain: west, Namespace: "shop"}, "spiffe://west.example/ns/shop/sa/api/extra", "not a workload ID"},
		{ServerPolicy{TrustDomain: west, Namespace: "shop"}, "spiffe://west.example", "not a workload ID"},
		{ServerPolicy{TrustDomain: west, Namespace: "shop"}, "", "no SPIFFE ID"},
	}
	for _, tt := range tests {
		var id spiffeid.ID
		if tt.id != "" {
			id = spiffeid.RequireFromString(tt.id)
		}
		err := tt.policy.Check(id)
		if tt.want == "" {
			if err != nil {
				t.Errorf("%s under %s: %v", tt.id, tt.policy, err)
			}
			continue
		}
		var sna *ServerNotAllowedError
		if !errors.Is(err, ErrServerNotAllowed) || !errors.As(err, &sna) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s under %s: %v, want a *ServerNotAllowedError mentioning %q", tt.id, tt.policy, err, tt.want)
		}
	}
	if got := (ServerPolicy{TrustDomain: west, Namespace: "shop", ServiceAccounts: []string{"a", "b"}}).String(); got != "spiffe://west.example/ns/shop/sa/{a,b}" {
		t.Errorf("String() = %q", got)
	}
	if got := (ServerPolicy{Namespace: "shop"}).String(); got != "spiffe://*/ns/shop/sa/*" {
		t.Errorf("String() = %q", got)
	}
}

// TestSnapshotRejectsEndpoints: an endpoint whose SPIFFE ID the cluster's
// export does not allow (another service account, trust domain or
// namespace, or none) is left out of every view of the snapshot and listed
// as rejected; a cluster whose gateways announce no trust domain is judged
// on namespace and service accounts only.
func TestSnapshotRejectsEndpoints(t *testing.T) {
	ks := Keyspace{}
	key := ServiceKey{Namespace: "shop", Name: "payments"}
	exp := withServers(testExport("west", "shop", "payments", time.Unix(1, 0)), "payments")
	ep := func(cluster, id, spiffe string) Record {
		e := testEndpoint(cluster, "shop", "payments", id)
		e.SpiffeId = spiffe
		return Record{Key: ks.Endpoint(cluster, "shop", "payments", id), Message: e}
	}
	records := []Record{
		{Message: testGateway("west", "gw-0")},
		{Message: exp},
		ep("west", "genuine", "spiffe://west.example/ns/shop/sa/payments"),
		ep("west", "other-sa", "spiffe://west.example/ns/shop/sa/cart"),
		ep("west", "other-td", "spiffe://east.example/ns/shop/sa/payments"),
		ep("west", "other-ns", "spiffe://west.example/ns/other/sa/payments"),
		ep("west", "no-id", ""),
		// north has no gateway record: its trust domain is not known.
		ep("north", "any-td", "spiffe://whatever.example/ns/shop/sa/cart"),
		ep("north", "other-ns", "spiffe://whatever.example/ns/other/sa/cart"),
	}
	snap := NewSnapshot(1, records)
	ids := func(eps []*straitv1.Endpoint) []string {
		var out []string
		for _, e := range eps {
			out = append(out, e.GetId())
		}
		return out
	}
	if got := ids(snap.ReadyEndpoints("west", key)); !slices.Equal(got, []string{"genuine"}) {
		t.Errorf("west ready endpoints = %v, want [genuine]", got)
	}
	if got := ids(snap.Endpoints("west", key)); !slices.Equal(got, []string{"genuine"}) {
		t.Errorf("west endpoints = %v, want [genuine]", got)
	}
	if got := ids(snap.Endpoints("north", key)); !slices.Equal(got, []string{"any-td"}) {
		t.Errorf("north endpoints = %v, want [any-td]", got)
	}
	var rejected []string
	for _, r := range snap.RejectedEndpoints() {
		rejected = append(rejected, r.Record.Key)
		if !errors.Is(r.Err, ErrServerNotAllowed) {
			t.Errorf("%s: %v does not match ErrServerNotAllowed", r.Record.Key, r.Err)
		}
	}
	want := []string{
		ks.Endpoint("north", "shop", "payments", "other-ns"),
		ks.Endpoint("west", "shop", "payments", "no-id"),
		ks.Endpoint("west", "shop", "payments", "other-ns"),
		ks.Endpoint("west", "shop", "payments", "other-sa"),
		ks.Endpoint("west", "shop", "payments", "other-td"),
	}
	if !slices.Equal(rejected, want) {
		t.Errorf("rejected = %v, want %v", rejected, want)
	}
	if snap.TrustDomain("west") != "west.example" {
		t.Errorf("west's trust domain = %q", snap.TrustDomain("west"))
	}
	if p := snap.ServerPolicy("west", key); p.String() != "spiffe://west.example/ns/shop/sa/payments" {
		t.Errorf("ServerPolicy(west) = %s", p)
	}
	// Without an export, the default: any service account of the namespace.
	if p := snap.ServerPolicy("west", ServiceKey{Namespace: "shop", Name: "cart"}); p.String() != "spiffe://west.example/ns/shop/sa/*" {
		t.Errorf("ServerPolicy(west, cart) = %s", p)
	}
}

// TestCacheCountsRejectedEndpoints: an endpoint record in etcd whose SPIFFE
// ID the export does not allow is counted once (reason server_identity)
// and never served, while the genuine one is; exporting its service
// account admits it.
func TestCacheCountsRejectedEndpoints(t *testing.T) {
	_, cli := etcdtest.Start(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	ks := Keyspace{}
	store := NewStore(cli, ks)
	key := ServiceKey{Namespace: "shop", Name: "payments"}
	put := func(k string, msg proto.Message) {
		t.Helper()
		b, err := EncodeRecord(msg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cli.Put(ctx, k, string(b)); err != nil {
			t.Fatal(err)
		}
	}
	put(ks.Gateway("west", "gw-0"), testGateway("west", "gw-0"))
	if _, err := store.PutExport(ctx, withServers(testExport("west", "shop", "payments", time.Now()), "payments")); err != nil {
		t.Fatal(err)
	}
	genuine := testEndpoint("west", "shop", "payments", "genuine")
	impostor := testEndpoint("west", "shop", "payments", "impostor")
	impostor.SpiffeId = "spiffe://west.example/ns/shop/sa/cart"
	put(ks.Endpoint("west", "shop", "payments", "genuine"), genuine)
	put(ks.Endpoint("west", "shop", "payments", "impostor"), impostor)

	reg := prometheus.NewRegistry()
	c := startCache(t, CacheConfig{Sources: oneSource(cli), Metrics: reg})
	labels := map[string]string{"kind": "endpoint", "reason": ReasonServerIdentity}
	snap := c.Snapshot()
	if eps := snap.ReadyEndpoints("west", key); len(eps) != 1 || eps[0].GetId() != "genuine" {
		t.Fatalf("ready endpoints = %v, want the genuine one only", eps)
	}
	if v := counterValue(t, reg, "strait_federation_invalid_records_total", labels); v != 1 {
		t.Errorf("invalid endpoints counted = %v, want 1", v)
	}
	// An unrelated change republishes; the same rejected record is not
	// counted again.
	put(ks.Gateway("west", "gw-1"), testGateway("west", "gw-1"))
	waitFor(t, c, "second gateway", func(s *Snapshot) bool { return len(s.Gateways("west")) == 2 })
	if v := counterValue(t, reg, "strait_federation_invalid_records_total", labels); v != 1 {
		t.Errorf("after an unrelated change: invalid endpoints counted = %v, want 1", v)
	}
	// Rewriting it counts it again.
	impostor.Ready = false
	put(ks.Endpoint("west", "shop", "payments", "impostor"), impostor)
	poll(t, "rewritten impostor counted", func() bool {
		return counterValue(t, reg, "strait_federation_invalid_records_total", labels) == 2
	})
	_, rejectedList, err := ListSnapshot(ctx, cli, ks)
	if err != nil {
		t.Fatal(err)
	}
	var ire *InvalidRecordError
	if len(rejectedList) != 1 || !errors.As(rejectedList[0], &ire) || ire.Reason != ReasonServerIdentity || !errors.Is(rejectedList[0], ErrServerNotAllowed) {
		t.Errorf("ListSnapshot invalid = %v, want the impostor with reason %s", rejectedList, ReasonServerIdentity)
	}
	// Listing it in the export's servers admits it.
	if _, err := store.PutExport(ctx, withServers(testExport("west", "shop", "payments", time.Now()), "payments", "cart")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, c, "impostor admitted", func(s *Snapshot) bool { return len(s.Endpoints("west", key)) == 2 })
	if n := len(c.Snapshot().RejectedEndpoints()); n != 0 {
		t.Errorf("%d endpoints still rejected", n)
	}

	listed, invalid, err := ListSnapshot(ctx, cli, ks)
	if err != nil {
		t.Fatal(err)
	}
	if len(invalid) != 0 || len(listed.Endpoints("west", key)) != 2 {
		t.Errorf("ListSnapshot: %d endpoints, invalid %v", len(listed.Endpoints("west", key)), invalid)
	}
}

// BenchmarkNewSnapshotEndpoints builds a snapshot of 10,000 endpoints (100
// clusters, 10 exported services each, 10 endpoints per service), every one
// judged against its cluster's servers policy.
func BenchmarkNewSnapshotEndpoints(b *testing.B) {
	ks := Keyspace{}
	var records []Record
	for cl := range 100 {
		cluster := fmt.Sprintf("cluster-%03d", cl)
		records = append(records, Record{Key: ks.Gateway(cluster, "gw-0"), Message: testGateway(cluster, "gw-0")})
		for s := range 10 {
			svc := fmt.Sprintf("svc-%02d", s)
			records = append(records, Record{Key: ks.Export(cluster, "shop", svc),
				Message: withServers(testExport(cluster, "shop", svc, time.Unix(int64(cl), 0)), svc)})
			for e := range 10 {
				id := fmt.Sprintf("ep-%d", e)
				records = append(records, Record{Key: ks.Endpoint(cluster, "shop", svc, id), Message: testEndpoint(cluster, "shop", svc, id)})
			}
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if s := NewSnapshot(1, records); len(s.RejectedEndpoints()) != 0 {
			b.Fatalf("%d endpoints rejected", len(s.RejectedEndpoints()))
		}
	}
}

// FuzzWorkloadParts: whatever SPIFFE ID a record names, WorkloadParts
// accepts exactly the paths /ns/<namespace>/sa/<service account>.
func FuzzWorkloadParts(f *testing.F) {
	for _, s := range []string{"spiffe://a/ns/shop/sa/api", "spiffe://a/ns/shop/sa/api/x", "spiffe://a/ns//sa/x",
		"spiffe://a/ns/a/sa/b/sa/c", "spiffe://a/strait/gateway/a", "spiffe://a", "spiffe://a/ns/sa/sa/sa"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := spiffeid.FromString(s)
		if err != nil {
			return
		}
		ns, sa, ok := WorkloadParts(id)
		want := strings.Count(id.Path(), "/") == 4 && strings.HasPrefix(id.Path(), "/ns/")
		if want {
			seg := strings.Split(id.Path(), "/")
			want = seg[3] == "sa" && seg[2] != "" && seg[4] != ""
		}
		if ok != want {
			t.Fatalf("WorkloadParts(%s) = %q, %q, %v; want ok %v", id, ns, sa, ok, want)
		}
		if ok && id.Path() != "/ns/"+ns+"/sa/"+sa {
			t.Fatalf("WorkloadParts(%s) = %q, %q", id, ns, sa)
		}
	})
}

// TestCacheSkipsUDPExport: an export with a UDP port written to etcd by
// hand (the Store refuses it) is counted as invalid and never served:
// Strait carries TCP only.
func TestCacheSkipsUDPExport(t *testing.T) {
	_, cli := etcdtest.Start(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	ks := Keyspace{}
	exp := testExport("west", "shop", "dns", time.Now(), tcpPort("dns-tcp", 53),
		&straitv1.ServicePort{Name: "dns", Port: 53, Protocol: straitv1.Protocol_PROTOCOL_UDP})
	if _, err := NewStore(cli, ks).PutExport(ctx, exp); !errors.Is(err, ErrInvalidRecord) || !strings.Contains(err.Error(), "Strait carries TCP only") {
		t.Fatalf("Store.PutExport of a UDP port = %v, want an invalid record error", err)
	}
	b, err := EncodeRecord(exp)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, ks.Export("west", "shop", "dns"), string(b)); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	c := startCache(t, CacheConfig{Sources: oneSource(cli), Metrics: reg})
	if v := counterValue(t, reg, "strait_federation_invalid_records_total", map[string]string{"kind": "export", "reason": "validate"}); v != 1 {
		t.Errorf("invalid exports counted = %v, want 1", v)
	}
	if _, ok := c.Snapshot().Service(ServiceKey{Namespace: "shop", Name: "dns"}); ok {
		t.Error("the UDP export is served")
	}
}
