package failover

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/strait-mesh/strait/e2e/load"
	"github.com/strait-mesh/strait/e2e/netns"
)

// TestMain lets the test binary double as the apps behind the pods'
// proxies (the e2e/load server, see world.startPod).
func TestMain(m *testing.M) {
	netns.RunHelpers(map[string]netns.HelperFunc{"load-server": load.ServerMain})
	os.Exit(m.Run())
}

// suiteTimeout bounds the whole suite (its budget is 8 minutes).
const suiteTimeout = 8 * time.Minute

// TestFailover builds one federation and runs the scenarios of issue 7 on
// it, in order; each starts from and returns to the steady state (gateways
// up, no partition, etcd up, east served by west). West's second gateway
// joins in scenario 6 and stays; scenario 2 runs before it, while west has
// a single gateway.
func TestFailover(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), suiteTimeout)
	defer cancel()
	w := newWorld(t, ctx)
	for _, sc := range []struct {
		name string
		run  func(*testing.T, context.Context, *world)
	}{
		{"1-reachability", scenarioReachability},
		{"2-gateway-kill", scenarioGatewayKill},
		{"3+4-partition-and-heal", scenarioPartition},
		{"5-etcd-outage", scenarioEtcdOutage},
		{"6-rolling-restart", scenarioRollingRestart},
		{"7-local-endpoints-unhealthy", scenarioLocalUnhealthy},
		{"8-live-region-order", scenarioRegionOrder},
		{"10-starved-client-proxy", scenarioStarvedProxy},
		{"9-gateway-kill-at-defaults", scenarioGatewayKillDefaults},
	} {
		if !t.Run(sc.name, func(t *testing.T) { sc.run(t, ctx, w) }) && ctx.Err() != nil {
			return
		}
	}
}

// scenarioReachability: hello.default answers callers of every other
// cluster, by explicit upstream, pinned to each serving cluster and
// unpinned; the app names its cluster and the caller's SPIFFE ID as the
// destination proxy authenticated it (from the proxy's PROXY header).
func scenarioReachability(t *testing.T, ctx context.Context, w *world) {
	tests := []struct {
		from, host, listen, want, caller string
	}{
		{"east", "client", upAny, "west", "spiffe://east.e2e/ns/default/sa/client"},
		{"east", "client", upWest, "west", "spiffe://east.e2e/ns/default/sa/client"},
		{"east", "client", upCentral, "central", "spiffe://east.e2e/ns/default/sa/client"},
		{"west", "pod1", upCentral, "central", "spiffe://west.e2e/ns/default/sa/hello"},
		{"central", "pod1", upWest, "west", "spiffe://central.e2e/ns/default/sa/hello"},
	}
	var h load.History
	start := time.Now()
	for i, tc := range tests {
		t.Run(fmt.Sprintf("%s-to-%s-via-%s", tc.from, tc.want, tc.listen), func(t *testing.T) {
			from := w.topo.Host(tc.from, tc.host)
			w.waitServed(ctx, from, tc.listen, tc.want, 30*time.Second)
			// Then ten fresh connections in a row, each answered in full.
			for j := range 10 {
				rec := load.Record{Seq: int64(i*10 + j), Start: time.Now()}
				body, err := load.Curl(ctx, from, "http://"+tc.listen+"/", 5*time.Second)
				rec.Latency = time.Since(rec.Start)
				var reply load.Reply
				switch {
				case err != nil:
					rec.Kind, rec.Error = load.KindOther, err.Error()
					t.Errorf("curl %s from %s: %v", tc.listen, from, err)
				case json.Unmarshal([]byte(body), &reply) != nil || reply.Cluster != tc.want || reply.Caller != tc.caller:
					rec.Kind, rec.Error = load.KindBadResponse, body
					t.Errorf("curl %s from %s: %q, want cluster %s and caller %s", tc.listen, from, strings.TrimSpace(body), tc.want, tc.caller)
				default:
					rec.Cluster = tc.want
				}
				h = append(h, rec)
			}
		})
	}
	row := load.NewRow("failover 1: reachability from every other cluster", h)
	row.Note = fmt.Sprintf("curl: %d caller/server pairs, 10 new connections each, in %s; clusterset.local names covered by proxy TestTransparentCapture",
		len(tests), ms(time.Since(start)))
	report(t, row)
}

// scenarioGatewayKill: west's only gateway is killed with SIGKILL while east
// opens 200 new connections per second to hello.default; none may fail.
// Reroute is how long after the kill requests settled on central (every
// later request served by central without waiting); return is how long
// after the gateway came back they settled on west again.
func scenarioGatewayKill(t *testing.T, ctx context.Context, w *world) {
	lr := startLoad(t, ctx, w.client(), upAny, "west")
	gw := w.gateways["west/gw1"]
	killed := time.Now()
	if err := gw.Kill(); err != nil {
		t.Fatal(err)
	}
	dead := time.Now() // Kill returns once the process has exited
	reroute := lr.waitSettled(t, killed, "central", 30*time.Second, 2*time.Second)
	restarted := time.Now()
	w.restartGateway(ctx, gw)
	back := lr.waitSettled(t, restarted, "west", 30*time.Second, 2*time.Second)
	h := lr.stop()

	t.Logf("kill at +0: reroute %s; before the kill: %s", ms(reroute), window(h, time.Time{}, killed))
	t.Logf("kill to restart (%s): %s", ms(restarted.Sub(killed)), window(h, killed, restarted))
	t.Logf("after the restart: %s; return %s", window(h, restarted, time.Now()), ms(back))
	t.Logf("timeline:%s", timeline(h, killed, killed.Add(-time.Second), time.Now(), 250*time.Millisecond))
	v := w.judge(t, h, killed, dead.Sub(killed))
	t.Logf("failures: %s", v)
	v.check(t, killed)
	after := h.Between(killed, time.Now()).Failures()
	if len(after) > 0 {
		t.Errorf("%d of %d new connections opened after the kill failed (want none):%s", len(after), len(h.Between(killed, time.Now())), failures(after, killed, 20))
	}
	row := load.NewRow("failover 2: SIGKILL of the serving cluster's only gateway", h)
	row.Reroute, row.Return = reroute, back
	row.SetExcused(v.excused(), v.cap)
	row.Note = fmt.Sprintf("%d rps; %s; %d failed opened after the kill; kill to restart: %s",
		rate, v, len(after), window(h, killed, restarted))
	report(t, row)
}

// hold lets the load run for d (a fault's duration, not a wait for state).
func hold(t *testing.T, ctx context.Context, d time.Duration) {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		t.Fatalf("holding for %s: %v", d, ctx.Err())
	case <-timer.C:
	}
}

// Limits of scenarios 3 and 4.
const (
	// maxPartitionReroute: new connections move within 1 s of a partition.
	maxPartitionReroute = time.Second
	// partitionLength is how long the partition lasts.
	partitionLength = 8 * time.Second
	// maxHealReturn: traffic is back in the preferred region within 30 s
	// of the heal (RELIABILITY.md T10).
	maxHealReturn = 30 * time.Second
)

// scenarioPartition (3 and 4): west is cut off the WAN (its links drop
// every datagram, and so do the other links for datagrams from west) under
// load; new connections must settle on central within 1 s, no connection
// opened later may fail, and a failure before that is excused only when its
// request reached an app (up to the in-flight cap). Then the partition
// heals and traffic must return to west.
func scenarioPartition(t *testing.T, ctx context.Context, w *world) {
	lr := startLoad(t, ctx, w.client(), upAny, "west")
	cut := time.Now()
	w.partition("west")
	cutDone := time.Now()
	t.Cleanup(func() { w.heal("west") })
	reroute := lr.waitSettled(t, cut, "central", 30*time.Second, time.Second)
	if rest := partitionLength - time.Since(cut); rest > 0 {
		hold(t, ctx, rest)
	}
	healed := time.Now()
	w.heal("west")
	back := lr.waitSettled(t, healed, "west", maxHealReturn+10*time.Second, 2*time.Second)
	h := lr.stop()

	t.Logf("partition at +0, heal at +%s; timeline:%s", ms(healed.Sub(cut)), timeline(h, cut, cut.Add(-time.Second), time.Now(), 250*time.Millisecond))
	during, afterHeal := h.Between(time.Time{}, healed), h.Between(healed, time.Now())
	v := w.judge(t, during, cut, cutDone.Sub(cut))
	bound := cut.Add(maxPartitionReroute)
	late := during.Between(bound, healed).Failures()
	t.Logf("partition: reroute %s; %s; %d failed opened %s or more after the cut:%s", ms(reroute), v, len(late), maxPartitionReroute, failures(during.Failures(), cut, 20))
	if reroute > maxPartitionReroute {
		t.Errorf("new connections settled on central %s after the partition, want within %s", ms(reroute), maxPartitionReroute)
	}
	v.check(t, cut)
	if len(late) > 0 {
		t.Errorf("%d connections opened %s or more after the cut failed (want none):%s", len(late), maxPartitionReroute, failures(late, cut, 20))
	}
	row3 := load.NewRow("failover 3: partition of the serving cluster", during)
	row3.Reroute = reroute
	row3.SetExcused(v.excused(), v.cap)
	row3.Note = fmt.Sprintf("%d rps, blackhole for %s; %s; %d failed opened after cut+%s; %s",
		rate, ms(healed.Sub(cut)), v, len(late), maxPartitionReroute, window(h, cut, healed))
	report(t, row3)

	t.Run("heal", func(t *testing.T) {
		if n := len(afterHeal.Failures()); n > 0 {
			t.Errorf("%d requests started after the heal failed:%s", n, failures(afterHeal, healed, 20))
		}
		if back > maxHealReturn {
			t.Errorf("traffic returned to west %s after the heal, want within %s", ms(back), maxHealReturn)
		}
		first, _ := afterHeal.FirstOKFrom(healed, "west")
		row4 := load.NewRow("failover 4: partition heals, traffic returns", afterHeal)
		row4.Return = back
		row4.Note = fmt.Sprintf("first answer from west %s after the heal; settled (every later request served by west) after %s; %s",
			ms(first), ms(back), window(h, healed, time.Now()))
		report(t, row4)
	})
}

// etcdOutage is how long the whole etcd cluster stays down in scenario 5.
const etcdOutage = 60 * time.Second

// faultSlow bounds the latency of the successes during the faults of
// scenarios 5, 6 and 8, which must cost a request at most a retry of a
// refused attempt, never a wait on a silent candidate. Measured on this
// 2-core machine at load average 30: p99 0.37-0.66 s and max 0.44-0.74 s
// (README.md). The p99 bound is 1.5 times the worst p99; the max bound is
// the header timeout of the live configuration, so a request that waited
// out a silent candidate's header timeout fails it.
var faultSlow = slowBounds{p99: time.Second, max: 2 * time.Second}

// scenarioEtcdOutage (5): under load, the etcd leader is killed; then every
// member is stopped for etcdOutage. Meanwhile both of east's gateways are
// restarted one after the other, so that from then on every request goes
// through a gateway that started without etcd and routes from its on-disk
// snapshot. No request may fail, before, during or after the outage.
func scenarioEtcdOutage(t *testing.T, ctx context.Context, w *world) {
	lr := startLoad(t, ctx, w.client(), upAny, "west")
	leader, err := w.etcd.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	leaderKilled := time.Now()
	if err := w.etcd.Kill(leader); err != nil {
		t.Fatal(err)
	}
	hctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = w.etcd.WaitHealthy(hctx)
	cancel()
	if err != nil {
		t.Fatalf("etcd after killing its leader: %v", err)
	}
	newLeader := time.Now()
	hold(t, ctx, 2*time.Second)

	down := time.Now()
	if err := w.etcd.StopAll(); err != nil {
		t.Logf("stopping etcd: %v", err)
	}
	t.Cleanup(func() {
		rctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = w.etcd.StartAll(rctx)
	})
	var restarts []string
	for _, host := range w.gatewayHosts("east") {
		hold(t, ctx, 2*time.Second)
		p := w.gateways[host.String()]
		begin := time.Now()
		if err := p.Stop(15 * time.Second); err != nil {
			t.Errorf("SIGTERM of %s during the outage: %v", host, err)
		}
		stopped := time.Now()
		np := w.restartGateway(ctx, p)
		if !strings.Contains(np.Log(), "loaded snapshot file") {
			t.Errorf("%s restarted during the etcd outage without logging that it loaded its snapshot file:\n%s", host, np.Log())
		}
		restarts = append(restarts, fmt.Sprintf("%s drained in %s, ready %s later", host, ms(stopped.Sub(begin)), ms(time.Since(stopped))))
	}
	restarted := time.Now()
	hold(t, ctx, 2*time.Second)
	if h := lr.gen.History().Between(restarted, time.Now()); h.Summary().OK == 0 {
		t.Errorf("no request succeeded through the restarted gateways: %s", window(h, restarted, time.Now()))
	}
	if rest := etcdOutage - time.Since(down); rest > 0 {
		hold(t, ctx, rest)
	}
	up := time.Now()
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	err = w.etcd.StartAll(rctx)
	cancel()
	if err != nil {
		t.Fatalf("restarting etcd: %v", err)
	}
	healthy := time.Now()
	hold(t, ctx, 5*time.Second)
	h := lr.stop()

	t.Logf("leader m%d killed at +0, new leader +%s, all members stopped +%s, restarted +%s (healthy +%s); %s",
		leader+1, ms(newLeader.Sub(leaderKilled)), ms(down.Sub(leaderKilled)), ms(up.Sub(leaderKilled)), ms(healthy.Sub(leaderKilled)), strings.Join(restarts, "; "))
	t.Logf("timeline:%s", timeline(h, leaderKilled, leaderKilled.Add(-time.Second), time.Now(), time.Second))
	for _, ph := range []struct {
		name     string
		from, to time.Time
	}{
		{"leader kill", leaderKilled, down}, {"outage, gateway restarts", down, restarted},
		{"outage, restarted gateways", restarted, up}, {"etcd back", up, time.Now()},
	} {
		t.Logf("%s: %s", ph.name, window(h, ph.from, ph.to))
	}
	if n := len(h.Failures()); n > 0 {
		t.Errorf("%d of %d requests failed (want none):%s", n, len(h), failures(h, leaderKilled, 20))
	}
	p99, slowest := checkSlow(t, h, leaderKilled, time.Now(), faultSlow, "from the leader kill until etcd is back")
	row := load.NewRow("failover 5: etcd leader kill, then etcd down", h)
	row.Note = fmt.Sprintf("%d rps; all of etcd down %s; both east gateways restarted during the outage (from their snapshots); during the fault p99 %s (bound %s), max %s (bound %s)",
		rate, ms(up.Sub(down)), ms(p99), faultSlow.p99, ms(slowest), faultSlow.max)
	report(t, row)
}

// scenarioRollingRestart (6): west runs two gateways; each in turn gets
// SIGTERM, drains, and starts again, under load; then east's two gateways
// (those the client's proxy dials) do the same. No request may fail.
func scenarioRollingRestart(t *testing.T, ctx context.Context, w *world) {
	if w.gateways["west/gw2"] == nil {
		w.startGateway(ctx, "west", "gw2")
	}
	for _, cluster := range []string{"west", "east"} {
		t.Run(cluster, func(t *testing.T) {
			lr := startLoad(t, ctx, w.client(), upAny, "west")
			hold(t, ctx, time.Second)
			begin := time.Now()
			var steps []string
			for _, host := range w.gatewayHosts(cluster) {
				p := w.gateways[host.String()]
				sig := time.Now()
				if err := p.Stop(30 * time.Second); err != nil {
					t.Errorf("drain of %s: %v", host, err)
				}
				exited := time.Now()
				w.restartGateway(ctx, p)
				steps = append(steps, fmt.Sprintf("%s drained in %s, ready %s later", host, ms(exited.Sub(sig)), ms(time.Since(exited))))
				hold(t, ctx, 2*time.Second)
			}
			end := time.Now()
			h := lr.stop()
			t.Logf("%s; timeline:%s", strings.Join(steps, "; "), timeline(h, begin, begin.Add(-time.Second), time.Now(), 500*time.Millisecond))
			if n := len(h.Failures()); n > 0 {
				t.Errorf("%d of %d requests failed (want none):%s", n, len(h), failures(h, begin, 20))
			}
			checkSlow(t, h, begin, end, faultSlow, "during the roll")
			row := load.NewRow(fmt.Sprintf("failover 6: rolling restart of %s's 2 gateways", cluster), h)
			row.Note = fmt.Sprintf("%d rps; %s; during the roll (bounds p99 %s, max %s): %s", rate, strings.Join(steps, "; "),
				faultSlow.p99, faultSlow.max, window(h, begin, end))
			report(t, row)
		})
	}
}

// scenarioLocalUnhealthy (7): east gets its own endpoint of hello.default,
// which east's callers prefer; its app is killed under load, the proxy's
// health check withdraws the endpoint's readiness, and callers must fail
// over to west without a failed request.
func scenarioLocalUnhealthy(t *testing.T, ctx context.Context, w *world) {
	pod := w.topo.Host("east", "pod1")
	w.startPod(ctx, "east", "pod1", localHealthInterval)
	t.Cleanup(func() {
		if p := w.proxies[pod.String()]; p != nil {
			_ = p.Stop(10 * time.Second)
		}
		if p := w.apps[pod.String()]; p != nil {
			_ = p.Kill()
		}
	})
	w.waitServed(ctx, w.client(), upAny, "east", 30*time.Second)
	lr := startLoad(t, ctx, w.client(), upAny, "east")
	killed := time.Now()
	if err := w.apps[pod.String()].Kill(); err != nil {
		t.Fatal(err)
	}
	dead := time.Now() // Kill returns once the process has exited
	reroute := lr.waitSettled(t, killed, "west", 30*time.Second, 2*time.Second)
	h := lr.stop()
	t.Logf("app killed at +0; reroute %s; timeline:%s", ms(reroute), timeline(h, killed, killed.Add(-time.Second), time.Now(), 100*time.Millisecond))
	// A request the app had received when it was killed dies with it, as
	// in scenarios 2 and 3: it is excused when its key is in the app's
	// journal (up to the in-flight cap); any other failure counts, and no
	// connection opened once the app had exited may fail.
	v := w.judge(t, h, killed, dead.Sub(killed))
	t.Logf("failures: %s", v)
	v.check(t, killed)
	after := h.Between(dead, time.Now()).Failures()
	if len(after) > 0 {
		t.Errorf("%d requests opened after the app exited failed (want none):%s", len(after), failures(after, killed, 20))
	}
	row := load.NewRow("failover 7: local endpoints unhealthy", h)
	row.Reroute = reroute
	row.SetExcused(v.excused(), v.cap)
	row.Note = fmt.Sprintf("%d rps; app killed (exited after %s), health check every 100 ms; %s; %d failed opened after it exited; after the kill: %s",
		rate, ms(dead.Sub(killed)), v, len(after), window(h, killed, time.Now()))
	report(t, row)
}

// maxPolicyApply bounds how long a live failover policy change may take to
// steer new connections.
const maxPolicyApply = 10 * time.Second

// scenarioRegionOrder (8): the failover policy is live configuration: east's
// own configuration is set to prefer us-central over us-west (strait config
// set --cluster east), and east's new connections must move to central
// without a failed request; then the order is set back and they return to
// west. West stays preferred in the other scenarios both by this order and
// by being the oldest export, so this is the check that the order itself
// is applied.
func scenarioRegionOrder(t *testing.T, ctx context.Context, w *world) {
	lr := startLoad(t, ctx, w.client(), upAny, "west")
	set := func(order string) {
		w.setClusterConfig(ctx, "east", "failover:\n  regionOrder: ["+order+"]\n")
	}
	t.Cleanup(func() { set("us-west, us-central") })
	changed := time.Now()
	set("us-central, us-west")
	moved, ok := lr.settled(changed, "central", maxPolicyApply, time.Second)
	restored := time.Now()
	set("us-west, us-central")
	back, backOK := time.Duration(0), true
	if ok { // else it never left west: nothing returns
		back, backOK = lr.settled(restored, "west", maxPolicyApply, time.Second)
	}
	h := lr.stop()
	t.Logf("regionOrder [us-central, us-west] at +0, back to [us-west, us-central] at +%s; timeline:%s",
		ms(restored.Sub(changed)), timeline(h, changed, changed.Add(-time.Second), time.Now(), time.Second))
	if !ok {
		t.Errorf("east's new connections did not move to central within %s of regionOrder [us-central, us-west]: %s",
			maxPolicyApply, window(h, changed, restored))
	}
	if !backOK {
		t.Errorf("east's new connections did not return to west within %s of regionOrder [us-west, us-central]: %s",
			maxPolicyApply, window(h, restored, time.Now()))
	}
	if n := len(h.Failures()); n > 0 {
		t.Errorf("%d of %d requests failed (want none):%s", n, len(h), failures(h, changed, 20))
	}
	p99, slowest := checkSlow(t, h, changed, time.Now(), faultSlow, "across both changes")
	row := load.NewRow("failover 8: live regionOrder change", h)
	if ok {
		row.Reroute = moved
	}
	if ok && backOK {
		row.Return = back
	}
	row.Note = fmt.Sprintf("strait config set --cluster east; p99 %s (bound %s), max %s (bound %s); after [us-central, us-west]: %s",
		ms(p99), faultSlow.p99, ms(slowest), faultSlow.max, window(h, changed, restored))
	report(t, row)
}

// defaultsConfig is the live configuration of scenario 9: the failover
// policy only, so that every timeout is the gateway's default (dial 3 s,
// header 5 s, keepalive 5 s, idle timeout 30 s).
const defaultsConfig = `failover:
  regionOrder: [us-west, us-central]
`

// Bounds of scenario 9, from the defaults (gateway/config.go,
// federation.DefaultLeaseTTL).
const (
	defaultDial     = 3 * time.Second
	defaultHeader   = 5 * time.Second
	defaultLeaseTTL = 10 * time.Second
	// defaultHedge is when the egress starts the next candidate beside an
	// attempt to a silent peer: a quarter of the dial timeout.
	defaultHedge = defaultDial / 4
	// maxDefaultsReroute: a SIGKILLed peer stays connected (its QUIC
	// connection lives until the 30 s idle timeout), so each new
	// connection first tries it and is hedged to central after
	// defaultHedge. The first attempt to the dead peer ends at its stream
	// deadline (dial + header = 8 s) and demotes it, but a demoted peer is
	// redialed after a backoff, which slows new connections again; the
	// peer stops being a candidate for good when its gateway record goes,
	// at the latest when its lease expires, defaultLeaseTTL after the kill.
	// The 5 s margin covers etcd's expiry check and the watch delivering
	// the deletion, the requests in flight then (each pays the hedge), and
	// a busy host. Measured: 7.7 s, 8.1 s and 12.9 s (README.md).
	maxDefaultsReroute = defaultLeaseTTL + 5*time.Second
	// maxDefaultsLatency bounds each request while the dead peer is still
	// tried: no connection may wait on it longer than one dial timeout
	// before another candidate serves it (the egress hedges after
	// defaultHedge and gives a candidate that is not the last dial/3 to
	// connect), plus a second for the handshake through central on a busy
	// host. Measured: max 1.04 s, 1.0 s and 2.9 s.
	maxDefaultsLatency = defaultDial + time.Second
)

// scenarioGatewayKillDefaults (9): scenario 2 at the defaults a user gets.
// The live configuration drops every timeout, all gateways are restarted
// so that their QUIC connections are negotiated at the defaults, and west
// runs one gateway (gw2 stops). Its SIGKILL must fail no new connection:
// the egress hedges a silent peer to the next candidate. Reroute and the
// slowest request are bounded from the defaults (see maxDefaultsReroute).
func scenarioGatewayKillDefaults(t *testing.T, ctx context.Context, w *world) {
	if p := w.gateways["west/gw2"]; p != nil {
		if exited, _ := p.Exited(); !exited {
			if err := p.Stop(15 * time.Second); err != nil {
				t.Errorf("stopping west/gw2: %v", err)
			}
		}
	}
	w.setLiveConfig(ctx, defaultsConfig)
	t.Cleanup(func() { w.setLiveConfig(context.Background(), liveConfig) })
	for _, c := range []string{"east", "west", "central"} {
		for _, host := range w.gatewayHosts(c) {
			p := w.gateways[host.String()]
			if err := p.Stop(15 * time.Second); err != nil {
				t.Errorf("restarting %s at the defaults: %v", host, err)
			}
			w.restartGateway(ctx, p)
		}
	}
	w.waitServed(ctx, w.client(), upAny, "west", 60*time.Second)

	lr := startLoad(t, ctx, w.client(), upAny, "west")
	hold(t, ctx, time.Second)
	gw := w.gateways["west/gw1"]
	killed := time.Now()
	if err := gw.Kill(); err != nil {
		t.Fatal(err)
	}
	dead := time.Now()
	reroute := lr.waitSettled(t, killed, "central", 60*time.Second, 2*time.Second)
	settled := killed.Add(reroute)
	restarted := time.Now()
	w.restartGateway(ctx, gw)
	back := lr.waitSettled(t, restarted, "west", 60*time.Second, 2*time.Second)
	h := lr.stop()

	t.Logf("kill at +0: reroute %s, restart at +%s, return %s after it; timeline:%s", ms(reroute), ms(restarted.Sub(killed)), ms(back),
		timeline(h, killed, killed.Add(-time.Second), time.Now(), 500*time.Millisecond))
	v := w.judge(t, h, killed, dead.Sub(killed))
	t.Logf("failures: %s", v)
	v.check(t, killed)
	after := h.Between(killed, time.Now()).Failures()
	if len(after) > 0 {
		t.Errorf("%d of %d new connections opened after the kill failed (want none):%s", len(after), len(h.Between(killed, time.Now())), failures(after, killed, 20))
	}
	if reroute > maxDefaultsReroute {
		t.Errorf("new connections settled on central %s after the kill, want within %s (lease TTL %s + 5 s)", ms(reroute), maxDefaultsReroute, defaultLeaseTTL)
	}
	rerouting := h.Between(killed, settled).Summary()
	if rerouting.Max > maxDefaultsLatency {
		t.Errorf("slowest request opened while the dead gateway was still tried took %s, want at most %s (dial timeout %s + 1 s)", ms(rerouting.Max), maxDefaultsLatency, defaultDial)
	}
	row := load.NewRow("failover 9: SIGKILL of the serving gateway at the default timeouts", h)
	row.Reroute, row.Return = reroute, back
	row.SetExcused(v.excused(), v.cap)
	row.Note = fmt.Sprintf("%d rps; keepalive 5s, idle 30s, dial 3s, header 5s; %s; %d failed opened after the kill; while rerouting: p99 %s, max %s (bound %s): %s",
		rate, v, len(after), ms(rerouting.P99), ms(rerouting.Max), maxDefaultsLatency, window(h, killed, settled))
	report(t, row)
}
