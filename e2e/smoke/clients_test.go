package smoke

import (
	"context"
	"testing"
	"time"

	"github.com/strait-mesh/strait/e2e/load"
	"github.com/strait-mesh/strait/e2e/toolbin"
	"github.com/strait-mesh/strait/e2e/wan"
)

// wrk and fortio, run inside the east namespace, across a 15 ms link.
func TestRealClientsThroughWANLink(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	fortio, err := toolbin.Path(ctx, "fortio")
	if err != nil {
		t.Fatal(err)
	}
	topo, pod := twoClusters(t, ctx)
	client := topo.Host("east", "client")
	link, err := topo.StartLink(ctx, wan.LinkConfig{Listen: ":8080", Backends: []string{pod.AddrPort(8080)}, Delay: oneWay})
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + link.Addr().String() + "/"

	w, err := load.Wrk(ctx, client, url, 1, 4, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("wrk 1 thread 4 connections 2 s: %d requests, %.0f/s, p50 %s p99 %s, %d errors", w.Requests, w.RequestsPerS, w.P50, w.P99, w.Errors)
	if w.Errors > 0 || w.P50 < 2*oneWay {
		t.Errorf("wrk: %d errors, p50 %s (want >= %s)", w.Errors, w.P50, 2*oneWay)
	}

	f, err := load.Fortio(ctx, client, fortio, url, 100, 4, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("fortio 100 qps 4 connections 2 s: %d ok (%v), %d errors, %.1f qps, p50 %s p90 %s p99 %s",
		f.Count, f.RetCodes, f.Errors, f.ActualQPS, f.P50, f.P90, f.P99)
	if f.Errors > 0 || f.RetCodes["200"] == 0 || f.P50 < 2*oneWay {
		t.Errorf("fortio: %+v", f)
	}
}
