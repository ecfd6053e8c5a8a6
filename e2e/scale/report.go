package scale

import (
	"fmt"
	"maps"
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
	Keys         int // keys in the keyspace once registered

	// Lists are the whole keyspace listed by one client alone, once per
	// page size of Config.ListPageSizes.
	Lists []ListFigures

	FirstSync         time.Duration // the first cache, alone
	HeapPerCache      int64         // heap the first cache holds once synced
	AllSync           time.Duration // the other caches, together
	HeapAllCaches     uint64        // the harness's heap with every cache synced
	HeapPerCacheAll   int64         // the heap every cache added, divided by their number
	SnapshotFileBytes int64         // the snapshot file of a cache (the second)

	// Real is what the real gateways and proxies measured (zero with
	// Config.SkipReal).
	Real RealFigures

	// Phases are the churn phases, one per rate of Config.Churn.
	Phases []*Phase
	Errors []string
}

// ListFigures are one list of the whole keyspace.
type ListFigures struct {
	PageSize     int64
	Time         time.Duration
	Pages        int
	LargestBytes int // the largest page's keys and values
}

// Phase is what one churn phase measured.
type Phase struct {
	Churn            float64 // share of endpoints changing readiness per second
	ChurnSeconds     float64
	Changes          int // endpoint readiness changes written
	SkippedChanges   int // picks of an endpoint whose last change was not seen everywhere yet
	ChangesPerSecond float64
	Deaths           int // clusters whose two gateways the phase killed (leases neither renewed nor revoked)
	Returns          int // of those, clusters whose gateways were started again
	// LeaseLeftAtDeath is, per death, the least remaining TTL etcd gave
	// the killed gateways' leases just before the death (whole seconds,
	// rounded down): no cache may withdraw them sooner.
	LeaseLeftAtDeath []time.Duration
	// EarlyWithdrawals are the withdrawals a cache showed before the
	// leases could have expired: each one is a bug.
	EarlyWithdrawals []string
	Rotations        int // bundles rotated
	// RouteStarted are the connections started through the real
	// clusters, one every routeEvery, each on its own (the phase starts
	// every one it schedules); RouteLateMax is how late the latest of
	// them started (the harness not scheduled in time). Routed were
	// echoed, RouteFailed failed, each in RouteFailures with its reasons.
	RouteStarted        int
	RouteLateMax        time.Duration
	RouteInFlightMax    int // connections open at once, at most
	Routed, RouteFailed int
	RouteFailures       []RouteFailure
	// RealCounts are the real clusters' refusal, reset and failure
	// counters that grew during the phase, by how much.
	RealCounts map[string]float64
	// Sched is how the harness process was scheduled during the phase.
	Sched                   SchedFigures
	Samples                 map[string][]time.Duration
	Unseen                  []string // kinds of the changes some cache never showed
	EtcdCPU                 float64  // cores, all members together, during churn
	EtcdRSS                 int64    // largest member
	EtcdDB                  float64  // largest member's database file
	EtcdDBInUse             float64
	KeepAlivesPerSecond     float64 // LeaseKeepAlive messages, all members
	EtcdRequestsPerSecond   float64 // gRPC messages received, all members
	EventsPerCachePerSecond float64 // watch events etcd sent, per watching cache (real ones included)
	RaftPerSecond           float64 // raft entries committed per second
	ApplyLag                float64 // entries committed but not applied at the phase's end, the most behind member
	Grants                  int     // LeaseGrant requests during the phase, all members
	TxnsPerSecond           float64 // Txn requests, all members
	HarnessCPU              float64 // cores used by this process (writers and caches)
	HarnessRSS              int64
	LoadAfter               string
	Errors                  []string
}

// Exports is the number of exports simulated.
func (r *Report) Exports() int { return r.Config.Clusters * r.Config.ExportsPerCluster }

// Percentile returns the q-quantile (0..1) of a kind's latencies.
func (p *Phase) Percentile(kind string, q float64) time.Duration {
	s := slices.Clone(p.Samples[kind])
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
	row("federation", "%d clusters × 2 gateways, %d exports (%d services × %d clusters), %d endpoints, %d bundles, %d leases, %d keys",
		c.Clusters, r.Exports(), r.Services, c.Clusters, r.Exports()*c.EndpointsPerExport, c.Clusters, 3*c.Clusters, r.Keys)
	row("machine", "%d CPUs; load average %s before, %s after", r.CPUs, r.LoadBefore, r.LoadAfter)
	heartbeat := "none (liveness on the leases)"
	if c.Heartbeat > 0 {
		heartbeat = "every " + c.Heartbeat.String()
	}
	row("etcd", "3 members on loopback, lease TTL %s, gateway heartbeat %s, caches' list page %d keys (0: the cache's default)",
		c.LeaseTTL, heartbeat, c.PageSize)
	row("seed (exports, bundles)", "%s", r.SeedTime.Round(time.Millisecond))
	row("registrars started (gateways, endpoints)", "%s", r.RegisterTime.Round(time.Millisecond))
	for _, l := range r.Lists {
		row(fmt.Sprintf("list of the keyspace alone, pages of %d keys", l.PageSize), "%s, %d pages, largest %s",
			l.Time.Round(time.Millisecond), l.Pages, mib(float64(l.LargestBytes)))
	}
	row("initial sync, first cache alone", "%s", r.FirstSync.Round(time.Millisecond))
	row(fmt.Sprintf("initial sync, %d more caches together", c.Caches-1), "%s", r.AllSync.Round(time.Millisecond))
	row("heap per cache: the first, alone; all caches' heap / caches", "%s; %s", mib(float64(r.HeapPerCache)), mib(float64(r.HeapPerCacheAll)))
	row("heap per export (with its endpoints): the same two", "%.0f bytes; %.0f bytes",
		float64(r.HeapPerCache)/float64(r.Exports()), float64(r.HeapPerCacheAll)/float64(r.Exports()))
	row(fmt.Sprintf("harness heap, %d caches synced", c.Caches), "%s", mib(float64(r.HeapAllCaches)))
	row("snapshot file", "%s", mib(float64(r.SnapshotFileBytes)))
	for _, name := range []string{realServer, realClient} {
		if d, ok := r.Real.Sync[name]; ok {
			row("real cluster "+name+" (node, gateway, proxy): ready, heap", "%s, %s", d.Round(time.Millisecond), mib(float64(r.Real.Heap[name])))
		}
	}
	if r.Real.FirstRoute > 0 {
		row("first connection through the real proxies and gateways", "%s after the client cluster started", r.Real.FirstRoute.Round(time.Millisecond))
	}
	for _, p := range r.Phases {
		pre := fmt.Sprintf("churn %g %%: ", 100*p.Churn)
		row(pre+"changes", "%.0f s, %d readiness changes (%.0f/s, goal %.0f/s), %d skipped (change still in flight), %d bundle rotations",
			p.ChurnSeconds, p.Changes, p.ChangesPerSecond, p.Churn*float64(r.Exports()*c.EndpointsPerExport), p.SkippedChanges, p.Rotations)
		row(pre+"gateway deaths", "%d clusters' 2 gateways killed (leases neither renewed nor revoked; lease left at death %s), %d returned",
			p.Deaths, durations(p.LeaseLeftAtDeath), p.Returns)
		for _, k := range []string{"endpoint", "bundle", "gateways-dead", "gateways-back", "routed"} {
			if n := len(p.Samples[k]); n > 0 {
				row(pre+kindNames[k], "p50 %s, p99 %s, min %s, max %s (%d samples)",
					ms(p.Percentile(k, 0.5)), ms(p.Percentile(k, 0.99)), ms(p.Percentile(k, 0)), ms(p.Percentile(k, 1)), n)
			}
		}
		row(pre+"gateways withdrawn before their leases could expire", "%d", len(p.EarlyWithdrawals))
		for i, e := range p.EarlyWithdrawals {
			if i == 5 {
				row(pre+"early withdrawal", "and %d more", len(p.EarlyWithdrawals)-i)
				break
			}
			row(pre+"early withdrawal", "%s", e)
		}
		if p.RouteStarted > 0 {
			row(pre+"connections through the real gateways", "%d started (one every %s, each on its own; the latest %s after its time; at most %d open at once), %d echoed, failed %s",
				p.RouteStarted, routeEvery, roundDur(p.RouteLateMax), p.RouteInFlightMax, p.Routed, failureSummary(p.RouteFailures))
			if len(p.RouteFailures) > 0 {
				row(pre+"failed connections by what the client cluster's snapshot held for the server", "%s", routingSummary(p.RouteFailures))
			}
			for i, f := range p.RouteFailures {
				if i == 10 {
					row(pre+"failed connection", "and %d more", len(p.RouteFailures)-i)
					break
				}
				row(pre+"failed connection", "at +%s, after %s: %s; routing: %s; real clusters' warnings: %s; harness meanwhile: %s",
					f.At.Round(time.Millisecond), f.Took.Round(time.Millisecond), f.Err, f.Routing, logsString(f), f.Sched.short())
			}
			row(pre+"real clusters' refusal, reset and failure counters", "%s", countsString(p.RealCounts))
		}
		row(pre+"harness scheduling", "%s", p.Sched)
		row(pre+"changes never seen by every cache", "%d%s", len(p.Unseen), countKinds(p.Unseen))
		row(pre+"etcd CPU (3 members)", "%.2f cores", p.EtcdCPU)
		row(pre+"etcd RSS (largest member)", "%s", mib(float64(p.EtcdRSS)))
		row(pre+"etcd database (largest member)", "%s file, %s in use", mib(p.EtcdDB), mib(p.EtcdDBInUse))
		row(pre+"lease keepalives on etcd", "%.0f/s", p.KeepAlivesPerSecond)
		row(pre+"gRPC requests on etcd (all kinds)", "%.0f/s", p.EtcdRequestsPerSecond)
		row(pre+"raft entries committed; Txn requests", "%.0f/s; %.0f/s", p.RaftPerSecond, p.TxnsPerSecond)
		row(pre+"lease grants; entries not yet applied at the end (most behind member)", "%d; %.0f", p.Grants, p.ApplyLag)
		row(pre+"watch events per cache", "%.0f/s", p.EventsPerCachePerSecond)
		row(pre+"harness (writers, caches, real clusters) CPU, RSS", "%.2f cores, %s", p.HarnessCPU, mib(float64(p.HarnessRSS)))
		row(pre+"load average after", "%s", p.LoadAfter)
		for _, e := range p.Errors {
			row(pre+"error", "%s", e)
		}
	}
	for _, e := range r.Errors {
		row("error", "%s", e)
	}
	return b.String()
}

// logsString renders a failure's lines: "none", or the lines and how
// many more there were.
func logsString(f RouteFailure) string {
	if len(f.Logs) == 0 {
		return "none"
	}
	s := strings.Join(f.Logs, "; ")
	if f.MoreLogs > 0 {
		s += fmt.Sprintf("; and %d more", f.MoreLogs)
	}
	return s
}

// kindNames name the samples of each kind in the table.
var kindNames = map[string]string{
	"endpoint":      "propagation: endpoint readiness change, per cache",
	"bundle":        "propagation: bundle rotation, per cache",
	"gateways-dead": "killed gateways withdrawn, from their death, per cache",
	"gateways-back": "returned gateways shown, from their start, per cache",
	"routed":        "connection through the real gateways, echoed in",
}

// durations renders a list of durations as "5s, 4s", or "none".
func durations(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none"
	}
	var parts []string
	for _, d := range ds {
		parts = append(parts, d.String())
	}
	return strings.Join(parts, ", ")
}

// countKinds renders how many of each kind a list holds: " (bundle 1,
// endpoint 3)", or "" for none.
func countKinds(kinds []string) string {
	if len(kinds) == 0 {
		return ""
	}
	n := map[string]int{}
	for _, k := range kinds {
		n[k]++
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(n)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, n[k]))
	}
	return " (" + strings.Join(parts, ", ") + ")"
}
