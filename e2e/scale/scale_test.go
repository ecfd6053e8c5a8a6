package scale

import (
	"context"
	"testing"
	"time"

	"github.com/strait-mesh/strait/e2e/toolbin"
)

// TestSmoke runs the harness on a small federation for a few seconds:
// 20 clusters of 10 exports with 3 endpoints, 10 caches, 5 % churn, two
// clusters' gateways killed and brought back, bundles rotating. Every
// change must reach every cache, and every figure of the report must have
// been measured.
func TestSmoke(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin, err := toolbin.Path(ctx, "etcd")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Clusters: 20, ExportsPerCluster: 10, Caches: 10, Churn: 0.05, Duration: 10 * time.Second,
		LeaseTTL: 2 * time.Second, Clients: 2, EtcdBinary: bin, Dir: t.TempDir(), Logf: t.Logf}
	rep, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", rep.Table())
	if len(rep.Unseen) != 0 {
		t.Errorf("%d changes never reached every cache: %v", len(rep.Unseen), rep.Unseen)
	}
	if rep.Services != 10 {
		t.Errorf("services = %d, want 10", rep.Services)
	}
	if rep.Changes == 0 || len(rep.Samples["endpoint"]) != rep.Changes*cfg.Caches {
		t.Errorf("%d endpoint samples for %d changes and %d caches", len(rep.Samples["endpoint"]), rep.Changes, cfg.Caches)
	}
	if rep.Deaths != deaths || len(rep.Samples["gateways-dead"]) != deaths*cfg.Caches || len(rep.Samples["gateways-back"]) != deaths*cfg.Caches {
		t.Errorf("deaths %d with %d/%d samples, want %d deaths seen by every cache", rep.Deaths,
			len(rep.Samples["gateways-dead"]), len(rep.Samples["gateways-back"]), deaths)
	}
	if rep.Rotations == 0 || len(rep.Samples["bundle"]) != rep.Rotations*cfg.Caches {
		t.Errorf("%d bundle samples for %d rotations", len(rep.Samples["bundle"]), rep.Rotations)
	}
	// A dead cluster is withdrawn once its leases expire, not before.
	if d := rep.Percentile("gateways-dead", 0); d < cfg.LeaseTTL/2 {
		t.Errorf("a dead cluster was withdrawn after %s, before its lease TTL %s could expire", d, cfg.LeaseTTL)
	}
	for name, v := range map[string]float64{"heap per cache": float64(rep.HeapPerCache), "snapshot file": float64(rep.SnapshotFileBytes),
		"etcd CPU": rep.EtcdCPU, "etcd RSS": float64(rep.EtcdRSS), "etcd DB": rep.EtcdDB, "keepalives/s": rep.KeepAlivesPerSecond,
		"events/s per cache": rep.EventsPerCachePerSecond} {
		if v <= 0 {
			t.Errorf("%s not measured (%v)", name, v)
		}
	}
	if len(rep.Errors) > 0 {
		t.Errorf("errors: %v", rep.Errors)
	}
}
