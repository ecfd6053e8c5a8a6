package federation

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/strait-mesh/strait/internal/etcdtest"

	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// TestIncrementalSnapshotMatchesRebuild drives the snapshot builder the
// cache publishes with through random changes (gateways with and without
// a trust domain coming and going, exports whose servers and ports change,
// endpoints with allowed and refused identities, bundles, configurations)
// and checks after each batch that the snapshot it derived answers every
// query exactly as a snapshot built from scratch over the same records by
// Next (which remembers the trust domains of the snapshot before).
func TestIncrementalSnapshotMatchesRebuild(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3, 4, 5} {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 0))
			b := newSnapshotBuilder(Keyspace{})
			records := map[string]*Record{}
			want := NewSnapshot(0, nil)
			for step := range 300 {
				for range 1 + rng.IntN(4) {
					key, rec := randomChange(rng)
					if rec == nil {
						delete(records, key)
					} else {
						records[key] = rec
					}
					b.set(key, recOf(rec))
				}
				got := b.build(int64(step))
				all := make([]Record, 0, len(records))
				for _, r := range records {
					all = append(all, *r)
				}
				want = want.Next(int64(step), all)
				if diff := compareSnapshots(got, want); diff != "" {
					t.Fatalf("step %d: incremental snapshot differs from a rebuild: %s", step, diff)
				}
			}
		})
	}
}

// randomChange picks a record of a small federation and either removes it
// or writes a random version of it.
func randomChange(rng *rand.Rand) (string, *Record) {
	ks := Keyspace{}
	cluster := fmt.Sprintf("c%d", rng.IntN(4))
	svc := fmt.Sprintf("s%d", rng.IntN(3))
	var key string
	var m proto.Message
	info := KeyInfo{Cluster: cluster}
	switch rng.IntN(6) {
	case 0:
		id := fmt.Sprintf("gw%d", rng.IntN(2))
		key, info.Kind = ks.Gateway(cluster, id), KindGateway
		g := testGateway(cluster, id)
		g.Draining = rng.IntN(4) == 0
		if rng.IntN(4) == 0 {
			g.TrustDomain = ""
		}
		m = g
	case 1:
		key, info.Kind = ks.Export(cluster, "ns", svc), KindExport
		e := testExport(cluster, "ns", svc, time.Unix(int64(rng.IntN(5)), 0), tcpPort("http", uint32(8080+rng.IntN(2))))
		if rng.IntN(3) == 0 {
			e.Servers = []string{"a"}
		}
		if rng.IntN(4) == 0 {
			e.Failover = &straitv1.FailoverPolicy{MinHealthyPercent: 50}
		}
		m = e
	case 2, 3:
		id := fmt.Sprintf("ep%d", rng.IntN(3))
		key, info.Kind = ks.Endpoint(cluster, "ns", svc, id), KindEndpoint
		ep := testEndpoint(cluster, "ns", svc, id)
		ep.Ready = rng.IntN(2) == 0
		switch rng.IntN(5) {
		case 0:
			ep.SpiffeId = "spiffe://" + cluster + ".example/ns/ns/sa/a"
		case 1:
			ep.SpiffeId = "spiffe://elsewhere.example/ns/ns/sa/" + svc
		case 2:
			ep.SpiffeId = "not an id"
		}
		m = ep
	case 4:
		td := fmt.Sprintf("c%d.example", rng.IntN(4))
		key, info.Kind = ks.Root()+"trust/"+td, KindBundle
		m = &straitv1.TrustBundle{TrustDomain: td, Sequence: uint64(rng.IntN(100))}
	case 5:
		if rng.IntN(2) == 0 {
			info.Cluster = ""
			key = ks.Root() + "config/global"
		} else {
			key = ks.Root() + "config/clusters/" + cluster
		}
		info.Kind = KindConfig
		m = &straitv1.GatewayConfig{Failover: &straitv1.FailoverPolicy{MinHealthyPercent: uint32(rng.IntN(100))}}
	}
	if rng.IntN(4) == 0 {
		return key, nil
	}
	return key, &Record{Key: key, Info: info, Message: m}
}

// compareSnapshots describes the first query two snapshots answer
// differently, or returns "".
func compareSnapshots(got, want *Snapshot) string {
	check := func(what string, g, w any) string {
		if !reflect.DeepEqual(g, w) {
			return fmt.Sprintf("%s = %v, want %v", what, g, w)
		}
		return ""
	}
	if d := check("Clusters", got.Clusters(), want.Clusters()); d != "" {
		return d
	}
	if d := check("Services", got.Services(), want.Services()); d != "" {
		return d
	}
	if d := check("Bundles", got.Bundles(), want.Bundles()); d != "" {
		return d
	}
	if d := check("conflicts", got.conflicts, want.conflicts); d != "" {
		return d
	}
	keys := func(rs []RejectedEndpoint) []string {
		var out []string
		for _, r := range rs {
			out = append(out, r.Record.Key+": "+r.Err.Error())
		}
		return out
	}
	if d := check("RejectedEndpoints", keys(got.RejectedEndpoints()), keys(want.RejectedEndpoints())); d != "" {
		return d
	}
	clusters := slices.Sorted(slices.Values([]string{"c0", "c1", "c2", "c3"}))
	for _, c := range clusters {
		for _, d := range []string{
			check("Gateways "+c, got.Gateways(c), want.Gateways(c)),
			check("ClusterAlive "+c, got.ClusterAlive(c), want.ClusterAlive(c)),
			check("TrustDomain "+c, got.TrustDomain(c), want.TrustDomain(c)),
			check("Config "+c, proto.Equal(got.Config(c), want.Config(c)), true),
		} {
			if d != "" {
				return d
			}
		}
		for s := range 3 {
			k := ServiceKey{Namespace: "ns", Name: fmt.Sprintf("s%d", s)}
			gs, gok := got.Service(k)
			ws, wok := want.Service(k)
			for _, d := range []string{
				check("Exports "+k.Name, got.Exports(k), want.Exports(k)),
				check("Service "+k.Name, gok, wok),
				check("Service "+k.Name, gs, ws),
				check("Export "+c+" "+k.Name, got.Export(c, k), want.Export(c, k)),
				check("Endpoints "+c+" "+k.Name, got.Endpoints(c, k), want.Endpoints(c, k)),
				check("ReadyEndpoints "+c+" "+k.Name, got.ReadyEndpoints(c, k), want.ReadyEndpoints(c, k)),
				check("BelowHealthy "+c+" "+k.Name, got.BelowHealthy(c, k, 60), want.BelowHealthy(c, k, 60)),
				check("ServerPolicy "+c+" "+k.Name, got.ServerPolicy(c, k), want.ServerPolicy(c, k)),
				check("Exporters "+k.Name, got.Exporters(k), want.Exporters(k)),
				check("FailoverPolicy "+c+" "+k.Name, got.FailoverPolicy(c, k), want.FailoverPolicy(c, k)),
			} {
				if d != "" {
					return d
				}
			}
		}
	}
	return ""
}

// TestFallbackWaitsForTheFirstSnapshot: a cache whose source is listed but
// whose first snapshot is still being built (a large federation takes
// seconds) must not declare itself synced with an empty snapshot when
// FallbackAfter passes; it is synced once that snapshot is out.
func TestFallbackWaitsForTheFirstSnapshot(t *testing.T) {
	_, cli := etcdtest.Start(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, err := NewStore(cli, Keyspace{}).PutExport(ctx, testExport("west", "shop", "payments", time.Unix(1, 0))); err != nil {
		t.Fatal(err)
	}
	const fallback = 50 * time.Millisecond
	c, err := NewCache(CacheConfig{Sources: oneSource(cli), FallbackAfter: fallback, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	// Holding the publisher stands for a first snapshot that takes long
	// to build.
	c.publishMu.Lock()
	held := true
	rctx, rcancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(rctx) }()
	defer func() { rcancel(); <-done }()
	defer func() {
		if held {
			c.publishMu.Unlock()
		}
	}()
	poll(t, "the source listed", func() bool { return c.Sources()[0].Listed })
	select {
	case <-c.Synced():
		t.Fatalf("synced with %d services before any snapshot held the listing", len(c.Snapshot().Services()))
	case <-time.After(10 * fallback):
	}
	c.publishMu.Unlock()
	held = false
	select {
	case <-c.Synced():
	case <-time.After(waitTimeout):
		t.Fatal("not synced after the first snapshot")
	}
	if n := len(c.Snapshot().Services()); n != 1 {
		t.Errorf("synced with %d services, want 1", n)
	}
}
