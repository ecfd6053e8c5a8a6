package failover

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/strait-mesh/strait/e2e/load"
)

// suiteTimeout bounds the whole suite (its budget is 8 minutes).
const suiteTimeout = 8 * time.Minute

// TestFailover builds one federation and runs the scenarios of issue 7 on
// it, in order; each starts from and returns to the steady state (every
// gateway but west/gw2 up, no partition, etcd up, east served by west).
func TestFailover(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), suiteTimeout)
	defer cancel()
	w := newWorld(t, ctx)
	for _, sc := range []struct {
		name string
		run  func(*testing.T, context.Context, *world)
	}{
		{"1-reachability", scenarioReachability},
	} {
		if !t.Run(sc.name, func(t *testing.T) { sc.run(t, ctx, w) }) && ctx.Err() != nil {
			return
		}
	}
}

// scenarioReachability: hello.default answers callers of every other
// cluster, by explicit upstream, pinned to each serving cluster and
// unpinned; the demo app names its cluster and the caller's SPIFFE ID as
// the destination proxy authenticated it.
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
				want := fmt.Sprintf("hello from cluster %s; you are %s", tc.want, tc.caller)
				switch {
				case err != nil:
					rec.Kind, rec.Error = load.KindOther, err.Error()
					t.Errorf("curl %s from %s: %v", tc.listen, from, err)
				case strings.TrimSpace(body) != want:
					rec.Kind, rec.Error = load.KindBadResponse, body
					t.Errorf("curl %s from %s: %q, want %q", tc.listen, from, strings.TrimSpace(body), want)
				default:
					rec.Cluster = tc.want
				}
				h = append(h, rec)
			}
		})
	}
	t.Run("clusterset-local", func(t *testing.T) {
		if out, _ := w.client().Output(ctx, w.bin, "proxy", "--help"); !strings.Contains(string(out), "transparent") {
			t.Skip("strait proxy has no transparent mode on its command line yet (no init/cleanup command, no transparent " +
				"field in proxy.yaml; proxy.Config.Transparent is not wired in cmd/strait), so callers cannot use " +
				"hello.default.svc.clusterset.local names; the explicit-upstream half above covers reachability")
		}
		t.Errorf("strait proxy mentions a transparent mode now: write the clusterset.local half of this scenario")
	})
	row := load.NewRow("failover 1: reachability from every other cluster", h)
	row.Note = fmt.Sprintf("curl: %d caller/server pairs, 10 new connections each, in %s; clusterset.local names not tested (no transparent mode in the CLI)",
		len(tests), ms(time.Since(start)))
	load.Report(t, row)
}
