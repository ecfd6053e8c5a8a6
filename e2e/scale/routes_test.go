package scale

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strait-mesh/strait/e2e/toolbin"
)

// TestRouteFailureReasons runs the two real clusters alone (one etcd
// member, no simulated cluster), kills the server cluster's echo app,
// and routes connections through them for a second: every scheduled
// connection must be started though each fails, and each failure must
// carry the client's error, the client proxy's own line about that
// connection (matched by the client's address), the routing state the
// client cluster saw, while the real clusters' counters show the
// refusals.
func TestRouteFailureReasons(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bin, err := toolbin.Path(ctx, "etcd")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s := &sim{cfg: Config{Dir: dir, LeaseTTL: 4 * time.Second, Logf: t.Logf}, logGrace: time.Second}
	if s.etcd, err = startEtcd(ctx, bin, dir, 1, 1<<30, 100*time.Millisecond, time.Second); err != nil {
		t.Fatal(err)
	}
	defer s.etcd.kill()
	runCtx, stop := context.WithCancel(ctx)
	defer func() {
		stop()
		s.regWG.Wait()
	}()
	s.regWG.Go(func() { s.sched.run(runCtx) })
	if err := s.startReal(runCtx, &Report{}); err != nil {
		t.Fatal(err)
	}
	if err := s.real[0].echo.Close(); err != nil {
		t.Fatal(err)
	}
	phase, end := context.WithTimeout(runCtx, time.Second)
	defer end()
	ph := &Phase{}
	var mu sync.Mutex
	s.routeDuringChurn(runCtx, phase, ph, &mu)
	t.Logf("\n%s", (&Report{Phases: []*Phase{ph}}).Table())

	if ph.RouteStarted < 5 || ph.RouteStarted > 6 {
		t.Errorf("%d connections started in 1 s, want 5 (6 if the last slot beat the phase's end)", ph.RouteStarted)
	}
	if ph.Routed != 0 || ph.RouteFailed != ph.RouteStarted || len(ph.RouteFailures) != ph.RouteFailed {
		t.Errorf("%d echoed, %d failed (%d explained) of %d started with the echo app dead: want every one failed and explained",
			ph.Routed, ph.RouteFailed, len(ph.RouteFailures), ph.RouteStarted)
	}
	for i, f := range ph.RouteFailures {
		if f.Err == "" || f.Class == "" || f.Routing == "" {
			t.Errorf("failure %d: error %q, class %q, routing %q: want each", i, f.Err, f.Class, f.Routing)
		}
		if !strings.HasPrefix(f.Proxy, realClient+" proxy ") {
			t.Errorf("failure %d (%s): the client proxy's line about it is %q, want one of %s's proxy", i, f.Err, f.Proxy, realClient)
		}
	}
	refused := 0.0
	for k, v := range ph.RealCounts {
		if strings.HasPrefix(k, realClient+" strait_proxy_connections_total{direction=outbound,") {
			refused += v
		}
	}
	if int(refused) != ph.RouteFailed {
		t.Errorf("the client proxy counted %g outbound connections that failed, want %d: counters %s", refused, ph.RouteFailed, countsString(ph.RealCounts))
	}
}
