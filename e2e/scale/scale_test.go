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
// connection scheduled must be started and echoed (a failure is printed
// with its reasons), and every figure of the report must have been
// measured.
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
		checkDeaths(t, i, p, cfg)
		if p.Rotations == 0 || len(p.Samples["bundle"]) != p.Rotations*cfg.Caches {
			t.Errorf("phase %d: %d bundle samples for %d rotations", i, len(p.Samples["bundle"]), p.Rotations)
		}
		// One connection every routeEvery, each started on its own.
		if want := int(cfg.Duration / routeEvery); p.RouteStarted < want || p.RouteStarted > want+1 {
			t.Errorf("phase %d: %d connections started through the real gateways in %s, want %d (one every %s)", i, p.RouteStarted, cfg.Duration, want, routeEvery)
		}
		if p.Routed == 0 || p.RouteFailed != 0 || p.Routed != p.RouteStarted || len(p.Samples["routed"]) != p.Routed {
			t.Errorf("phase %d: %d connections echoed through the real gateways (%d samples), %d failed of %d started", i, p.Routed, len(p.Samples["routed"]), p.RouteFailed, p.RouteStarted)
		}
		for _, f := range p.RouteFailures {
			t.Errorf("phase %d: connection at +%s failed after %s: %s (%s); real clusters' warnings: %s; harness meanwhile: %s", i, f.At, f.Took, f.Err, f.Summary(), logsString(f), f.Sched)
		}
		if p.Sched.Seconds == 0 {
			t.Errorf("phase %d: the harness' scheduling not sampled", i)
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

// TestGatewayDeathsPerPhase runs churn phases shorter than the lease TTL
// (3 s phases, 4 s TTL), as `make scale` does at 1,000 clusters (60 s
// phases, 30 s TTL, two deaths each): every phase must kill both
// clusters' gateways and bring them back, and every cache must withdraw
// them no sooner than their leases could expire and about a TTL after
// their death. The harness used to kill one cluster after another within
// the phase and give up at its end: a phase shorter than a death counted
// none, left the cluster dead, and the next phase "killed" it again and
// measured its withdrawal in milliseconds (3.1 s at 1,000 clusters, where
// the caches lagged by seconds).
func TestGatewayDeathsPerPhase(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin, err := toolbin.Path(ctx, "etcd")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Clusters: 4, ExportsPerCluster: 2, Caches: 3, Churn: []float64{0.05, 0.05}, Duration: 3 * time.Second,
		LeaseTTL: 4 * time.Second, Clients: 1, EtcdHeartbeat: 100 * time.Millisecond, EtcdElectionTimeout: time.Second,
		SkipReal: true, EtcdBinary: bin, Dir: t.TempDir(), Logf: t.Logf}
	rep, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", rep.Table())
	if len(rep.Phases) != 2 {
		t.Fatalf("%d churn phases, want 2", len(rep.Phases))
	}
	for i, p := range rep.Phases {
		checkDeaths(t, i, p, cfg)
		if len(p.Unseen) != 0 {
			t.Errorf("phase %d: %d changes never reached every cache: %v", i, len(p.Unseen), p.Unseen)
		}
	}
}

// checkDeaths checks a phase's gateway deaths: deaths clusters killed and
// returned, each seen by every cache, withdrawn no sooner than etcd's
// remaining TTL at the death allowed and at most 10 s after a full TTL.
func checkDeaths(t *testing.T, i int, p *Phase, cfg Config) {
	t.Helper()
	if p.Deaths != deaths || p.Returns != deaths {
		t.Errorf("phase %d: %d deaths, %d returns, want %d of each", i, p.Deaths, p.Returns, deaths)
	}
	if n := len(p.Samples["gateways-dead"]); n != deaths*cfg.Caches {
		t.Errorf("phase %d: %d withdrawals, want %d (%d deaths, %d caches)", i, n, deaths*cfg.Caches, deaths, cfg.Caches)
	}
	if n := len(p.Samples["gateways-back"]); n != deaths*cfg.Caches {
		t.Errorf("phase %d: %d returns seen, want %d (%d deaths, %d caches)", i, n, deaths*cfg.Caches, deaths, cfg.Caches)
	}
	if len(p.LeaseLeftAtDeath) != deaths {
		t.Errorf("phase %d: lease left at %d deaths, want %d", i, len(p.LeaseLeftAtDeath), deaths)
	}
	for _, left := range p.LeaseLeftAtDeath {
		if left <= 0 || left > cfg.LeaseTTL {
			t.Errorf("phase %d: lease left at death %s, want (0, %s]", i, left, cfg.LeaseTTL)
		}
	}
	// The harness checks each withdrawal against its own leases' expiry.
	for _, e := range p.EarlyWithdrawals {
		t.Errorf("phase %d: withdrawn before the leases could expire: %s", i, e)
	}
	// clientv3 renews a lease every third of its TTL: a gateway killed
	// just before a renewal has 2/3 of it left. Withdrawn sooner than
	// half a TTL, it was not this death's lease that expired.
	for _, d := range p.Samples["gateways-dead"] {
		if d < cfg.LeaseTTL/2 || d > cfg.LeaseTTL+10*time.Second {
			t.Errorf("phase %d: gateways withdrawn %s after their death, want about the lease TTL %s", i, d, cfg.LeaseTTL)
		}
	}
}
