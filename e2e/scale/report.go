package scale

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Report holds what a run measured.
type Report struct {
	Config     Config
	CPUs       int
	LoadBefore string // /proc/loadavg before the run
	LoadAfter  string // and after

	SeedTime     time.Duration // writing every export and bundle
	RegisterTime time.Duration // every registrar's records written
	Services     int

	FirstSync         time.Duration // the first cache, alone
	HeapPerCache      int64         // heap the first cache holds once synced
	AllSync           time.Duration // the other caches, together
	HeapAllCaches     uint64        // the harness's heap with every cache synced
	SnapshotFileBytes int64         // the first cache's snapshot file

	ChurnSeconds            float64
	Changes                 int // endpoint readiness changes written
	SkippedChanges          int // picks of an endpoint whose last change was not seen everywhere yet
	ChangesPerSecond        float64
	Deaths                  int // clusters whose gateways died and came back
	Rotations               int // bundles rotated
	Samples                 map[string][]time.Duration
	Unseen                  []string // kinds of the changes some cache never showed
	EtcdCPU                 float64  // cores, all members together, during churn
	EtcdRSS                 int64    // largest member
	EtcdDB                  float64  // largest member's database file
	EtcdDBInUse             float64
	KeepAlivesPerSecond     float64 // LeaseKeepAlive messages, all members
	EtcdRequestsPerSecond   float64 // gRPC messages received, all members
	EventsPerCachePerSecond float64
	HarnessCPU              float64 // cores used by this process (writers and caches)
	HarnessRSS              int64
	Errors                  []string
}

// Exports is the number of exports simulated.
func (r *Report) Exports() int { return r.Config.Clusters * r.Config.ExportsPerCluster }

// Percentile returns the q-quantile (0..1) of a kind's latencies.
func (r *Report) Percentile(kind string, q float64) time.Duration {
	s := slices.Clone(r.Samples[kind])
	if len(s) == 0 {
		return 0
	}
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

// Table renders the report as a Markdown table.
func (r *Report) Table() string {
	var b strings.Builder
	c := r.Config
	row := func(name, format string, args ...any) {
		fmt.Fprintf(&b, "| %s | %s |\n", name, fmt.Sprintf(format, args...))
	}
	mib := func(n float64) string { return fmt.Sprintf("%.1f MiB", n/(1<<20)) }
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
	fmt.Fprintf(&b, "| figure | value |\n|---|---|\n")
	row("federation", "%d clusters × 2 gateways, %d exports (%d services × %d clusters), %d endpoints, %d bundles, %d leases",
		c.Clusters, r.Exports(), r.Services, c.Clusters, r.Exports()*c.EndpointsPerExport, c.Clusters, 3*c.Clusters)
	row("machine", "%d CPUs; load average %s before, %s after", r.CPUs, r.LoadBefore, r.LoadAfter)
	row("etcd", "3 members on loopback, lease TTL %s, gateway heartbeat every %s, list page %d keys (0: the cache's default)",
		c.LeaseTTL, c.LeaseTTL/3, c.PageSize)
	row("seed (exports, bundles)", "%s", r.SeedTime.Round(time.Millisecond))
	row("registrars started (gateways, endpoints)", "%s", r.RegisterTime.Round(time.Millisecond))
	row("initial sync, first cache alone", "%s", r.FirstSync.Round(time.Millisecond))
	row(fmt.Sprintf("initial sync, %d more caches together", c.Caches-1), "%s", r.AllSync.Round(time.Millisecond))
	row("heap per cache", "%s", mib(float64(r.HeapPerCache)))
	row("heap per export (with its endpoints)", "%.0f bytes", float64(r.HeapPerCache)/float64(r.Exports()))
	row(fmt.Sprintf("harness heap, %d caches synced", c.Caches), "%s", mib(float64(r.HeapAllCaches)))
	row("snapshot file", "%s", mib(float64(r.SnapshotFileBytes)))
	row("churn", "%.0f s, %d readiness changes (%.0f/s, goal %.0f/s), %d skipped (change still in flight), %d gateway deaths and returns, %d bundle rotations",
		r.ChurnSeconds, r.Changes, r.ChangesPerSecond, c.Churn*float64(r.Exports()*c.EndpointsPerExport), r.SkippedChanges, r.Deaths, r.Rotations)
	for _, k := range []string{"endpoint", "bundle", "gateways-dead", "gateways-back"} {
		if n := len(r.Samples[k]); n > 0 {
			row("propagation: "+k, "p50 %s, p99 %s, max %s (%d change×cache samples)",
				ms(r.Percentile(k, 0.5)), ms(r.Percentile(k, 0.99)), ms(r.Percentile(k, 1)), n)
		}
	}
	row("changes never seen by every cache", "%d %v", len(r.Unseen), r.Unseen)
	row("etcd CPU during churn (3 members)", "%.2f cores", r.EtcdCPU)
	row("etcd RSS (largest member)", "%s", mib(float64(r.EtcdRSS)))
	row("etcd database (largest member)", "%s file, %s in use", mib(r.EtcdDB), mib(r.EtcdDBInUse))
	row("lease keepalives on etcd", "%.0f/s", r.KeepAlivesPerSecond)
	row("gRPC requests on etcd (all kinds)", "%.0f/s", r.EtcdRequestsPerSecond)
	row("watch events per cache", "%.0f/s", r.EventsPerCachePerSecond)
	row("harness (writers + caches) CPU, RSS", "%.2f cores, %s", r.HarnessCPU, mib(float64(r.HarnessRSS)))
	for _, e := range r.Errors {
		row("error", "%s", e)
	}
	return b.String()
}
