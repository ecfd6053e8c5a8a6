package scale

import (
	"context"
	"testing"
	"time"

	"github.com/strait-mesh/strait/e2e/toolbin"
)

// TestSmoke runs the harness on a small federation for a few seconds:
// 20 clusters of 10 exports with 3 endpoints, 10 caches, two churn phases
// (2 % then 5 %), two clusters' gateways killed and brought back in each,
// bundles rotating, and the real clusters' gateways and proxies routing a
// connection every 200ms. Every change must reach every cache, every
// connection must be echoed, and every figure of the report must have
// been measured.
func TestSmoke(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	bin, err := toolbin.Path(ctx, "etcd")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Clusters: 20, ExportsPerCluster: 10, Caches: 10, Churn: []float64{0.02, 0.05}, Duration: 8 * time.Second,
		LeaseTTL: 2 * time.Second, Clients: 2, EtcdHeartbeat: 100 * time.Millisecond, EtcdElectionTimeout: time.Second, ListPageSizes: []int64{100, 1000}, EtcdBinary: bin, Dir: t.TempDir(), Logf: t.Logf}
	rep, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", rep.Table())
	if rep.Services != 10 {
		t.Errorf("services = %d, want 10", rep.Services)
	}
	// 20 clusters: 2 gateways, 10 exports, 30 endpoints each; 20 bundles.
	if want := 20*(2+10+30) + 20; rep.Keys != want {
		t.Errorf("keys = %d, want %d", rep.Keys, want)
	}
	if len(rep.Lists) != 2 || rep.Lists[0].Pages != (rep.Keys+99)/100 || rep.Lists[1].Pages != 1 {
		t.Errorf("lists %+v of %d keys: want %d pages of 100 and 1 of 1000", rep.Lists, rep.Keys, (rep.Keys+99)/100)
	}
	for _, name := range []string{realServer, realClient} {
		if rep.Real.Sync[name] <= 0 || rep.Real.Heap[name] <= 0 {
			t.Errorf("real cluster %s: ready %s, heap %d: not measured", name, rep.Real.Sync[name], rep.Real.Heap[name])
		}
	}
	if rep.Real.FirstRoute <= 0 {
		t.Error("no first connection through the real gateways measured")
	}
	if len(rep.Phases) != 2 {
		t.Fatalf("%d churn phases, want 2", len(rep.Phases))
	}
	for i, p := range rep.Phases {
		if len(p.Unseen) != 0 {
			t.Errorf("phase %d: %d changes never reached every cache: %v", i, len(p.Unseen), p.Unseen)
		}
		if p.Changes == 0 || len(p.Samples["endpoint"]) != p.Changes*cfg.Caches {
			t.Errorf("phase %d: %d endpoint samples for %d changes and %d caches", i, len(p.Samples["endpoint"]), p.Changes, cfg.Caches)
		}
		if p.Deaths != deaths || len(p.Samples["gateways-dead"]) != deaths*cfg.Caches || len(p.Samples["gateways-back"]) != deaths*cfg.Caches {
			t.Errorf("phase %d: deaths %d with %d/%d samples, want %d deaths seen by every cache", i, p.Deaths,
				len(p.Samples["gateways-dead"]), len(p.Samples["gateways-back"]), deaths)
		}
		if p.Rotations == 0 || len(p.Samples["bundle"]) != p.Rotations*cfg.Caches {
			t.Errorf("phase %d: %d bundle samples for %d rotations", i, len(p.Samples["bundle"]), p.Rotations)
		}
		// A dead cluster is withdrawn once its leases expire, not before.
		if d := p.Percentile("gateways-dead", 0); d < cfg.LeaseTTL/2 {
			t.Errorf("phase %d: a dead cluster was withdrawn after %s, before its lease TTL %s could expire", i, d, cfg.LeaseTTL)
		}
		if p.Routed == 0 || p.RouteFailed != 0 || len(p.Samples["routed"]) != p.Routed {
			t.Errorf("phase %d: %d connections echoed through the real gateways (%d samples), %d failed", i, p.Routed, len(p.Samples["routed"]), p.RouteFailed)
		}
		for name, v := range map[string]float64{"etcd CPU": p.EtcdCPU, "etcd RSS": float64(p.EtcdRSS), "etcd DB": p.EtcdDB,
			"keepalives/s": p.KeepAlivesPerSecond, "events/s per cache": p.EventsPerCachePerSecond} {
			if v <= 0 {
				t.Errorf("phase %d: %s not measured (%v)", i, name, v)
			}
		}
		if len(p.Errors) > 0 {
			t.Errorf("phase %d: errors: %v", i, p.Errors)
		}
	}
	// The first cache's heap alone is within the noise of the writers at
	// this size; the caches' together is not.
	for name, v := range map[string]float64{"heap per cache": float64(rep.HeapPerCacheAll), "snapshot file": float64(rep.SnapshotFileBytes)} {
		if v <= 0 {
			t.Errorf("%s not measured (%v)", name, v)
		}
	}
	if len(rep.Errors) > 0 {
		t.Errorf("errors: %v", rep.Errors)
	}
}
