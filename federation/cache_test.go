package federation

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/strait-mesh/strait/internal/etcdtest"
)

func TestCacheSeesRegistrarAndStore(t *testing.T) {
	_, cli := etcdtest.Start(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	ks := Keyspace{}
	store := NewStore(cli, ks)
	if _, err := store.PutExport(ctx, testExport("west", "default", "payments", time.Now())); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	c := startCache(t, CacheConfig{Sources: oneSource(cli), Metrics: reg})
	if got := c.Snapshot().Exports(ServiceKey{Namespace: "default", Name: "payments"}); len(got) != 1 {
		t.Fatalf("exports after sync = %v", got)
	}

	// A reader that never looks at its channel again blocks nothing.
	ignored := c.Changed()

	r, err := NewRegistrar(RegistrarConfig{Client: cli, TTL: 2 * time.Second, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	r.Put(ks.Gateway("west", "gw-0"), testGateway("west", "gw-0"))
	rctx, rcancel := context.WithCancel(context.Background())
	rdone := make(chan error, 1)
	go func() { rdone <- r.Run(rctx) }()
	<-r.Registered()

	key := ServiceKey{Namespace: "default", Name: "payments"}
	waitFor(t, c, "west alive and serving payments", func(s *Snapshot) bool {
		svc, ok := s.Service(key)
		return ok && len(svc.Clusters) == 1 && svc.Clusters[0] == "west"
	})

	// Cancelling the registrar revokes the lease: the cluster is withdrawn.
	rcancel()
	if err := <-rdone; err != context.Canceled {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
	waitFor(t, c, "west withdrawn", func(s *Snapshot) bool {
		svc, ok := s.Service(key)
		return ok && len(svc.Clusters) == 0 && !s.ClusterAlive("west")
	})
	select {
	case <-ignored:
	default:
		t.Error("an ignored Changed channel was not closed")
	}
	if v := counterValue(t, reg, "strait_federation_relists_total", nil); v != 1 {
		t.Errorf("relists = %v, want 1", v)
	}
}
