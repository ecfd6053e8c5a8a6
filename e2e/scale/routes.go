package scale

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// routeEvery is how often a connection goes through the real clusters
// during churn.
const routeEvery = 200 * time.Millisecond

// defaultRouteLogGrace is how long after a failed connection ended the
// real clusters' lines are still taken as its reasons: the server
// proxy's inner handshake timeout (proxy.DefaultHandshakeTimeout, 5 s)
// may fire after the client gave up.
const defaultRouteLogGrace = 6 * time.Second

// maxFailureLogs bounds the lines kept per failed connection.
const maxFailureLogs = 8

// RouteFailure is one connection through the real clusters that failed,
// and what the real components said about it.
type RouteFailure struct {
	At   time.Duration // its start, from the phase's start
	Took time.Duration
	// Err is the client's error and Class its kind ("read: reset by
	// peer").
	Err, Class string
	// Proxy is the client proxy's line about this connection (matched by
	// the client's address; a WARN when it refused or failed it, the
	// DEBUG "connection closed" when it relayed it), "" if it logged
	// none.
	Proxy string
	// Logs are the client proxy's line about it and the real clusters'
	// WARN lines from its start to the log grace (defaultRouteLogGrace)
	// after its end but those of the client proxy about other
	// connections, at most maxFailureLogs of them; MoreLogs counts the
	// others.
	Logs     []string
	MoreLogs int
	// Routing is what the client cluster's snapshot held for the server
	// at the connection's start and end (gateways, ready endpoints).
	Routing string
	// Sched is how the harness process was scheduled meanwhile.
	Sched SchedFigures
}

// Summary is the failure's kind, for counting: the client's error and
// the client proxy's reason.
func (f RouteFailure) Summary() string {
	s := "client: " + f.Class
	if f.Proxy != "" {
		s += " ← " + f.Proxy
	}
	return s
}

// routeAttempt is one connection of routeDuringChurn.
type routeAttempt struct {
	start, end time.Time
	took       time.Duration
	local      string // the client's address, as the client proxy logs it
	err        error
	stage      string
	routing    [2]string // at the start and the end
}

// routeDuringChurn starts a connection through the real clusters every
// routeEvery until the phase (ctx) ends, each in its own goroutine so
// that a slow one delays none of the others: the phase schedules
// duration/routeEvery of them, starts each at its time or, when the
// harness was not scheduled in time, as soon as it runs (RouteLateMax),
// and starts every one it scheduled before the phase's deadline. Each
// connection runs under runCtx: the end of the phase does not cut the
// last ones short. It returns once every connection has ended, with the
// reasons of the failed ones recorded in ph.
func (s *sim) routeDuringChurn(runCtx, ctx context.Context, ph *Phase, mu *sync.Mutex) {
	if len(s.real) == 0 {
		return
	}
	phaseStart := time.Now()
	before := s.realCounts()
	var (
		wg       sync.WaitGroup
		attMu    sync.Mutex
		attempts []*routeAttempt
		late     time.Duration
		inFlight atomic.Int64
		most     atomic.Int64
	)
	for i := 0; ; i++ {
		at := phaseStart.Add(time.Duration(i) * routeEvery)
		select {
		case <-ctx.Done():
		case <-time.After(time.Until(at)):
		}
		// A slot whose time came before the phase's end is started even
		// when this goroutine ran only after the end.
		if end, ok := ctx.Deadline(); ctx.Err() != nil && (!ok || !at.Before(end) || runCtx.Err() != nil) {
			break
		}
		late = max(late, time.Since(at))
		wg.Go(func() {
			n := inFlight.Add(1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			a := s.routeOnce(runCtx)
			inFlight.Add(-1)
			attMu.Lock()
			attempts = append(attempts, a)
			attMu.Unlock()
		})
	}
	wg.Wait()
	if runCtx.Err() != nil {
		return
	}
	var fails []*routeAttempt
	var samples []time.Duration
	for _, a := range attempts {
		if a.err != nil {
			fails = append(fails, a)
		} else {
			samples = append(samples, a.took)
		}
	}
	// The server side's lines about a failure may come after the client
	// gave up.
	var last time.Time
	for _, a := range fails {
		if a.end.After(last) {
			last = a.end
		}
	}
	if wait := time.Until(last.Add(s.routeLogGrace())); len(fails) > 0 && wait > 0 {
		select {
		case <-runCtx.Done():
			return
		case <-time.After(wait):
		}
	}
	after := s.realCounts()
	mu.Lock()
	defer mu.Unlock()
	ph.RouteStarted = len(attempts)
	ph.RouteLateMax = late
	ph.RouteInFlightMax = int(most.Load())
	ph.Routed = len(samples)
	ph.RouteFailed = len(fails)
	ph.RealCounts = countDelta(before, after)
	slices.SortFunc(fails, func(a, b *routeAttempt) int { return a.start.Compare(b.start) })
	for _, a := range fails {
		ph.RouteFailures = append(ph.RouteFailures, s.explain(a, phaseStart, attempts))
	}
	s.probes.mu.Lock()
	if s.probes.samples == nil {
		s.probes.samples = map[string][]time.Duration{}
	}
	s.probes.samples["routed"] = append(s.probes.samples["routed"], samples...)
	s.probes.mu.Unlock()
}

func (s *sim) routeLogGrace() time.Duration {
	if s.logGrace > 0 {
		return s.logGrace
	}
	return defaultRouteLogGrace
}

// routeOnce makes one connection through the real clusters and records
// how it went.
func (s *sim) routeOnce(ctx context.Context) *routeAttempt {
	a := &routeAttempt{start: time.Now(), routing: [2]string{s.routing()}}
	a.took, a.local, a.stage, a.err = s.route(ctx)
	a.end = time.Now()
	a.routing[1] = s.routing()
	return a
}

// routing says what the client cluster's snapshot holds for the server
// cluster: its gateways and the echo service's ready endpoints.
func (s *sim) routing() string {
	snap := s.real[len(s.real)-1].node.Cache.Snapshot()
	ready := 0
	for _, ep := range snap.Endpoints(realServer, realKey) {
		if ep.GetReady() {
			ready++
		}
	}
	return fmt.Sprintf("%d gateway, %d ready endpoint", len(snap.Gateways(realServer)), ready)
}

// explain gathers what the real clusters said about a failed connection.
func (s *sim) explain(a *routeAttempt, phaseStart time.Time, all []*routeAttempt) RouteFailure {
	names := s.addrNames()
	f := RouteFailure{At: a.start.Sub(phaseStart), Took: a.end.Sub(a.start), Err: names.replace(a.err.Error()),
		Class: a.stage + ": " + errClass(a.err, names), Sched: s.sched.window(a.start, a.end)}
	f.Routing = a.routing[0]
	if a.routing[1] != a.routing[0] {
		f.Routing += " at its start, " + a.routing[1] + " at its end"
	}
	// The client proxy's lines about other connections are theirs.
	others := map[string]bool{}
	for _, o := range all {
		if o != a && o.local != "" {
			others[o.local] = true
		}
	}
	client := s.real[len(s.real)-1].name
	var unclaimed []logLine // the client proxy's lines of no other connection
	proxyLevel := slog.LevelDebug
	for _, l := range s.logs.between(a.start, a.end.Add(s.routeLogGrace())) {
		remote := l.str("remote_addr")
		mine := l.str("cluster") == client && l.str("component") == "proxy" && l.str("direction") == "outbound"
		switch {
		case mine && remote == a.local && a.local != "":
			// Its last line at its highest level is its verdict.
			if l.level >= proxyLevel {
				f.Proxy, proxyLevel = l.reason(names, false), l.level
			}
			f.Logs = append(f.Logs, fmt.Sprintf("+%s %s", l.at.Sub(a.start).Round(time.Millisecond), l.reason(names, true)))
			continue
		case mine && others[remote]:
			continue
		case l.level < slog.LevelWarn:
			continue // the DEBUG lines of others
		case mine:
			unclaimed = append(unclaimed, l)
		}
		if len(f.Logs) == maxFailureLogs {
			f.MoreLogs++
			continue
		}
		f.Logs = append(f.Logs, fmt.Sprintf("+%s %s", l.at.Sub(a.start).Round(time.Millisecond), l.reason(names, true)))
	}
	// A dial that failed has no address to match (the client proxy can
	// accept and reset a connection before the dial returns): the one
	// line of the client proxy that no other connection claims is its.
	if f.Proxy == "" && a.local == "" && len(unclaimed) == 1 {
		f.Proxy = unclaimed[0].reason(names, false) + " (the only line no other connection claims)"
	}
	return f
}

// addrNames names the real clusters' addresses.
func (s *sim) addrNames() addrNames {
	n := addrNames{}
	for _, rc := range s.real {
		n[rc.gw.EgressAddr().String()] = rc.name + " gateway egress"
		n[rc.gw.IngressAddr().String()] = rc.name + " gateway ingress"
		if a := rc.proxy.InboundAddr(); a != nil {
			n[a.String()] = rc.name + " proxy inbound"
		}
		if rc.app != "" {
			n[rc.app] = rc.name + " echo app"
		}
	}
	if c := s.real[len(s.real)-1]; c.proxy.UpstreamAddr(0) != nil {
		n[c.proxy.UpstreamAddr(0).String()] = c.name + " proxy upstream"
	}
	return n
}

// route makes one connection through the real clusters and checks its
// echo; it returns how long the connection and echo took, the client's
// address, and on failure the stage that failed (dial, write, read,
// echo).
func (s *sim) route(ctx context.Context) (took time.Duration, local, stage string, err error) {
	client := s.real[len(s.real)-1]
	start := time.Now()
	d := net.Dialer{Timeout: 5 * time.Second}
	c, err := d.DialContext(ctx, "tcp", client.proxy.UpstreamAddr(0).String())
	if err != nil {
		return 0, "", "dial", fmt.Errorf("scale: dial the client proxy: %w", err)
	}
	defer func() { _ = c.Close() }()
	local = c.LocalAddr().String()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	msg := []byte("strait scale ping\n")
	if _, err := c.Write(msg); err != nil {
		return 0, local, "write", fmt.Errorf("scale: write through the gateways: %w", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return 0, local, "read", fmt.Errorf("scale: read the echo through the gateways: %w", err)
	}
	if string(got) != string(msg) {
		return 0, local, "echo", fmt.Errorf("scale: %w: %q, want %q", errBadEcho, got, msg)
	}
	return time.Since(start), local, "", nil
}

var errBadEcho = errors.New("echo differs")

// realCounts reads the real clusters' counters of refusals, resets and
// failures: every strait_* counter whose name says so, and every one
// whose result, reason or code label is not a success.
func (s *sim) realCounts() map[string]float64 {
	out := map[string]float64{}
	for _, rc := range s.real {
		fams, err := rc.reg.Gather()
		if err != nil {
			continue
		}
		for _, fam := range fams {
			if fam.GetType() != dto.MetricType_COUNTER || !strings.HasPrefix(fam.GetName(), "strait_") {
				continue
			}
			byName := containsAny(fam.GetName(), "refus", "fail", "reset", "invalid", "error", "restart", "relist")
			for _, m := range fam.GetMetric() {
				if !byName && !failureLabel(m) {
					continue
				}
				out[rc.name+" "+fam.GetName()+labelString(m)] += m.GetCounter().GetValue()
			}
		}
	}
	return out
}

func containsAny(s string, subs ...string) bool {
	return slices.ContainsFunc(subs, func(sub string) bool { return strings.Contains(s, sub) })
}

// failureLabel reports whether a sample's result, reason or code label
// names something other than a success (or a bundle record the store
// already held, or its own, which every snapshot brings).
func failureLabel(m *dto.Metric) bool {
	for _, l := range m.GetLabel() {
		switch l.GetName() {
		case "result", "reason", "code":
			switch l.GetValue() {
			case "ok", "accepted", "applied", "success", "unchanged", "ignored":
			default:
				return true
			}
		}
	}
	return false
}

func labelString(m *dto.Metric) string {
	if len(m.GetLabel()) == 0 {
		return ""
	}
	var parts []string
	for _, l := range m.GetLabel() {
		parts = append(parts, l.GetName()+"="+l.GetValue())
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// countDelta returns the counters that grew from before to after, by how
// much.
func countDelta(before, after map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range after {
		if d := v - before[k]; d > 0 {
			out[k] = d
		}
	}
	return out
}

// failureSummary renders the failures by kind: "2 (client: read: reset
// by peer ← real-a proxy ... ×2)".
func failureSummary(fails []RouteFailure) string {
	if len(fails) == 0 {
		return "0"
	}
	n := map[string]int{}
	for _, f := range fails {
		n[f.Summary()]++
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(n)) {
		parts = append(parts, fmt.Sprintf("%s ×%d", k, n[k]))
	}
	return fmt.Sprintf("%d (%s)", len(fails), strings.Join(parts, "; "))
}

// countsString renders counter deltas sorted by name: "real-a
// strait_proxy_...{...} 2, ...", or "none".
func countsString(c map[string]float64) string {
	if len(c) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(c)) {
		parts = append(parts, fmt.Sprintf("%s %g", k, c[k]))
	}
	return strings.Join(parts, "; ")
}

// routingSummary counts the failures by their routing state: "1 gateway,
// 1 ready endpoint ×3; ...".
func routingSummary(fails []RouteFailure) string {
	n := map[string]int{}
	for _, f := range fails {
		n[f.Routing]++
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(n)) {
		parts = append(parts, fmt.Sprintf("%s ×%d", k, n[k]))
	}
	return strings.Join(parts, "; ")
}
