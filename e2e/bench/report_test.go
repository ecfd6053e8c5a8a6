package bench

import (
	"bytes"
	"encoding/json"
	"flag"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func TestPercentile(t *testing.T) {
	ms := func(vs ...int) []time.Duration {
		var out []time.Duration
		for _, v := range vs {
			out = append(out, time.Duration(v)*time.Millisecond)
		}
		return out
	}
	twenty := ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20)
	for _, tt := range []struct {
		name    string
		samples []time.Duration
		q       float64
		want    time.Duration
	}{
		{"none", nil, 0.5, 0},
		{"one p50", ms(7), 0.5, 7 * time.Millisecond},
		{"one p99", ms(7), 0.99, 7 * time.Millisecond},
		{"two p50 is the lower", ms(1, 2), 0.5, time.Millisecond},
		{"three p50 is the middle", ms(1, 2, 3), 0.5, 2 * time.Millisecond},
		{"twenty p50 is the 10th", twenty, 0.5, 10 * time.Millisecond},
		{"twenty p90 is the 18th", twenty, 0.9, 18 * time.Millisecond},
		{"twenty p99 is the 20th", twenty, 0.99, 20 * time.Millisecond},
		{"twenty p35 is the 7th, not the 8th", twenty, 0.35, 7 * time.Millisecond},
		{"seven p90 is the 7th (ceil 6.3)", ms(1, 2, 3, 4, 5, 6, 7), 0.9, 7 * time.Millisecond},
		{"five p90 is the 5th (ceil 4.5)", ms(1, 2, 3, 4, 5), 0.9, 5 * time.Millisecond},
		{"q 0 is the smallest", ms(1, 2, 3), 0, time.Millisecond},
		{"q 1 is the largest", ms(1, 2, 3), 1, 3 * time.Millisecond},
	} {
		if got := percentile(tt.samples, tt.q); got != tt.want {
			t.Errorf("%s: percentile(%v, %v) = %v, want %v", tt.name, tt.samples, tt.q, got, tt.want)
		}
	}
}

func TestMedian(t *testing.T) {
	for _, tt := range []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{3, 1}, 2},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{9, 1, 8, 2, 7}, 7},
	} {
		in := slices.Clone(tt.in)
		if got := median(tt.in); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
		}
		if !slices.Equal(in, tt.in) {
			t.Errorf("median reordered its argument: %v, was %v", tt.in, in)
		}
	}
}

// goalNames are the goals in the order Goals reports them (issue 16's
// only appear with their rows).
var goalNames = []string{
	"issue 8: 1-stream throughput >= 0.9x raw quic-go",
	"issue 8: 8-stream throughput >= 0.5x stunnel4 pair",
	"issue 8: added p99 at 1000 rps <= stunnel4 pair's and < 1 ms",
	"issue 8: new-connection TTFB at 30 ms RTT <= 0.55x stunnel4 pair",
	"issue 8/15: export propagation p99 <= 2.0x raw etcd watch p99",
	"issue 15.2: each proxy at 1000 rps RSS <= 20 MB, RssAnon <= 12 MB, CPU <= 0.05 s per 1000 requests",
	"issue 15.3: 8-stream throughput >= 1.0x rawquic's 8 streams",
	"issue 15.3: 8-stream throughput >= 1.3x Strait's 1 stream",
	"issue 15.4: added p99 at 1000 rps <= haproxy SNI-gateway chain's",
	"issue 15.4: CPU per 1000 requests <= 1.5x haproxy SNI-gateway chain's",
}

// metGoals returns rows that meet every goal, most exactly at its bound.
func metGoals() map[string]map[string]float64 {
	return map[string]map[string]float64{
		"throughput_1_stream":         {SetupStrait: 10, SetupRawQUIC: 10, SetupDirect: 40},
		"throughput_8_streams":        {SetupStrait: 13, SetupStunnel: 26, SetupRawQUIC: 13},
		"added_latency_p99":           {SetupStrait: 0.5, SetupStunnel: 0.5, SetupHAProxySNI: 0.5},
		"ttfb_30ms_rtt_p50":           {SetupStrait: 55, SetupStunnel: 100},
		"cpu_per_1k_req_proxy_client": {SetupStrait: 0.05},
		"rss_proxy_client":            {SetupStrait: 20},
		"rss_anon_proxy_client":       {SetupStrait: 12},
		"cpu_per_1k_req_proxy_server": {SetupStrait: 0.05},
		"rss_proxy_server":            {SetupStrait: 20},
		"rss_anon_proxy_server":       {SetupStrait: 12},
		"cpu_per_1k_req_total":        {SetupStrait: 1.5, SetupHAProxySNI: 1},
		"export_propagation_p99":      {SetupStrait: 4, SetupEtcdWatch: 2},
	}
}

func toMetrics(rows map[string]map[string]float64) []Metric {
	var out []Metric
	for bench, vs := range rows {
		out = append(out, Metric{Bench: bench, Values: vs})
	}
	slices.SortFunc(out, func(a, b Metric) int { return strings.Compare(a.Bench, b.Bench) })
	return out
}

func TestGoals(t *testing.T) {
	const (
		met     = "met"
		notMet  = "NOT MET"
		missing = "NOT MEASURED"
	)
	type rows = map[string]map[string]float64
	for _, tt := range []struct {
		name   string
		change func(r rows)
		// fail marks values failed after change.
		fail func(ms []Metric)
		want map[int]string // goals whose state changes
	}{
		{"all at their bounds", func(rows) {}, nil, nil},
		{"1-stream below 0.9x", func(r rows) { r["throughput_1_stream"][SetupStrait] = 8.99 }, nil, map[int]string{0: notMet, 7: met}},
		{"1-stream without rawquic", func(r rows) { delete(r["throughput_1_stream"], SetupRawQUIC) }, nil, map[int]string{0: missing}},
		{"1-stream without its row", func(r rows) { delete(r, "throughput_1_stream") }, nil, map[int]string{0: missing, 7: missing}},
		{"1-stream rawquic measured 0", func(r rows) { r["throughput_1_stream"][SetupRawQUIC] = 0 }, nil, map[int]string{0: missing}},
		{"8-stream below 0.5x stunnel4", func(r rows) { r["throughput_8_streams"][SetupStunnel] = 26.1 }, nil, map[int]string{1: notMet}},
		{"8-stream without stunnel4", func(r rows) { delete(r["throughput_8_streams"], SetupStunnel) }, nil, map[int]string{1: missing}},
		{"8-stream without strait", func(r rows) { delete(r["throughput_8_streams"], SetupStrait) }, nil, map[int]string{1: missing, 6: missing, 7: missing}},
		{"added p99 above stunnel4's", func(r rows) { r["added_latency_p99"][SetupStunnel] = 0.49 }, nil, map[int]string{2: notMet}},
		{"added p99 1 ms, below both peers'", func(r rows) {
			r["added_latency_p99"][SetupStrait], r["added_latency_p99"][SetupStunnel], r["added_latency_p99"][SetupHAProxySNI] = 1, 2, 2
		}, nil, map[int]string{2: notMet}},
		{"added p99 negative (faster than direct)", func(r rows) { r["added_latency_p99"][SetupStrait] = -0.1 }, nil, nil},
		{"added p99 without stunnel4", func(r rows) { delete(r["added_latency_p99"], SetupStunnel) }, nil, map[int]string{2: missing}},
		{"added p99 without strait", func(r rows) { delete(r["added_latency_p99"], SetupStrait) }, nil, map[int]string{2: missing, 8: missing}},
		{"added p99 of strait marked failed (rate off)", func(rows) {}, func(ms []Metric) {
			for i := range ms {
				if ms[i].Bench == "added_latency_p99" {
					ms[i].Fail(SetupStrait, "achieved 900 requests/s")
				}
			}
		}, map[int]string{2: notMet, 8: notMet}},
		{"added p99 of haproxy_sni marked failed", func(rows) {}, func(ms []Metric) {
			for i := range ms {
				if ms[i].Bench == "added_latency_p99" {
					ms[i].Fail(SetupHAProxySNI, "achieved 900 requests/s")
				}
			}
		}, map[int]string{8: notMet}},
		{"ttfb above 0.55x", func(r rows) { r["ttfb_30ms_rtt_p50"][SetupStrait] = 55.1 }, nil, map[int]string{3: notMet}},
		{"ttfb without its row", func(r rows) { delete(r, "ttfb_30ms_rtt_p50") }, nil, map[int]string{3: missing}},
		{"propagation above 2x", func(r rows) { r["export_propagation_p99"][SetupStrait] = 4.01 }, nil, map[int]string{4: notMet}},
		{"propagation without etcd watch", func(r rows) { delete(r["export_propagation_p99"], SetupEtcdWatch) }, nil, map[int]string{4: missing}},
		{"propagation without strait", func(r rows) { delete(r["export_propagation_p99"], SetupStrait) }, nil, map[int]string{4: missing}},
		{"client proxy CPU above", func(r rows) { r["cpu_per_1k_req_proxy_client"][SetupStrait] = 0.051 }, nil, map[int]string{5: notMet}},
		{"server proxy RSS above", func(r rows) { r["rss_proxy_server"][SetupStrait] = 20.1 }, nil, map[int]string{5: notMet}},
		{"client proxy anonymous memory above", func(r rows) { r["rss_anon_proxy_client"][SetupStrait] = 12.1 }, nil, map[int]string{5: notMet}},
		{"server proxy CPU missing", func(r rows) { delete(r, "cpu_per_1k_req_proxy_server") }, nil, map[int]string{5: missing}},
		{"server proxy anonymous memory missing", func(r rows) { delete(r, "rss_anon_proxy_server") }, nil, map[int]string{5: missing}},
		{"8 streams below rawquic's", func(r rows) { r["throughput_8_streams"][SetupRawQUIC] = 13.1 }, nil, map[int]string{6: notMet}},
		{"8 streams below 1.3x 1 stream", func(r rows) { r["throughput_1_stream"][SetupStrait] = 10.1 }, nil, map[int]string{7: notMet}},
		{"added p99 above haproxy_sni's", func(r rows) { r["added_latency_p99"][SetupHAProxySNI] = 0.49 }, nil, map[int]string{8: notMet}},
		{"added p99 without haproxy_sni", func(r rows) { delete(r["added_latency_p99"], SetupHAProxySNI) }, nil, map[int]string{8: missing}},
		{"CPU above 1.5x haproxy_sni's", func(r rows) { r["cpu_per_1k_req_total"][SetupStrait] = 1.51 }, nil, map[int]string{9: notMet}},
		{"CPU without haproxy_sni", func(r rows) { delete(r["cpu_per_1k_req_total"], SetupHAProxySNI) }, nil, map[int]string{9: missing}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := metGoals()
			tt.change(r)
			ms := toMetrics(r)
			if tt.fail != nil {
				tt.fail(ms)
			}
			gs := Goals(ms)
			if len(gs) != len(goalNames) {
				t.Fatalf("%d goals, want %d: %+v", len(gs), len(goalNames), gs)
			}
			for i, g := range gs {
				if g.Name != goalNames[i] {
					t.Errorf("goal %d is %q, want %q", i, g.Name, goalNames[i])
				}
				want, ok := tt.want[i]
				if !ok {
					want = met
				}
				if got := goalState(g); got != want {
					t.Errorf("goal %q is %s, want %s (%s)", g.Name, got, want, g.Detail)
				}
				if !g.Missing && g.Detail == "" {
					t.Errorf("goal %q was judged with no detail", g.Name)
				}
			}
		})
	}
}

// TestIssue16Goals checks that issue 16's goals are judged when, and only
// when, their rows are in the run.
func TestIssue16Goals(t *testing.T) {
	for _, tt := range []struct {
		name string
		rows map[string]map[string]float64
		want map[string]string // goal name → state
	}{
		{"no rows, no goals", nil, map[string]string{}},
		{"warm within 35 ms, cold as per-connection, 3x connections", map[string]map[string]float64{
			"ttfb_warm_30ms_rtt_p50": {SetupStrait: 35},
			"ttfb_cold_30ms_rtt_p50": {SetupStrait: 65},
			"ttfb_30ms_rtt_p50":      {SetupStrait: 65},
			"new_conns_per_cpu_s":    {SetupStrait: 3000, SetupStraitPerConn: 1000},
		}, map[string]string{
			"issue 16: warm-session TTFB at 30 ms RTT <= 35 ms":                    "met",
			"issue 16: cold TTFB at 30 ms RTT <= per-connection mode's":            "met",
			"issue 16: new connections per CPU second >= 3x per-connection mode's": "met",
		}},
		{"cold against per-connection mode's cold value in the same row", map[string]map[string]float64{
			"ttfb_cold_30ms_rtt_p50": {SetupStrait: 70, SetupStraitPerConn: 69},
			"ttfb_30ms_rtt_p50":      {SetupStrait: 80},
		}, map[string]string{
			"issue 16: cold TTFB at 30 ms RTT <= per-connection mode's": "NOT MET",
		}},
		{"warm too slow, cold slower, too few connections, no baseline of cold", map[string]map[string]float64{
			"ttfb_warm_30ms_rtt":     {SetupStrait: 35.1},
			"ttfb_cold_30ms_rtt_p50": {SetupStrait: 66},
			"new_conns_per_cpu_s":    {SetupStrait: 2999, SetupStraitPerConn: 1000},
		}, map[string]string{
			"issue 16: warm-session TTFB at 30 ms RTT <= 35 ms":                    "NOT MET",
			"issue 16: cold TTFB at 30 ms RTT <= per-connection mode's":            "NOT MEASURED",
			"issue 16: new connections per CPU second >= 3x per-connection mode's": "NOT MET",
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := map[string]string{}
			for _, g := range issue16Goals(goalRows(toMetrics(tt.rows))) {
				got[g.Name] = goalState(g)
			}
			if !maps.Equal(got, tt.want) {
				t.Errorf("goals %v, want %v", got, tt.want)
			}
		})
	}
}

func goalState(g Goal) string {
	var b bytes.Buffer
	WriteGoals(&b, []Goal{g})
	state, _, _ := strings.Cut(b.String(), "  ")
	return strings.TrimSpace(state)
}

func TestLines(t *testing.T) {
	ms := []Metric{
		{Bench: "a", Unit: "x", Values: map[string]float64{SetupStrait: 3, SetupStunnel: 2, SetupDirect: 4, "unknown": 1}},
		{Bench: "b", Unit: "y", Values: map[string]float64{SetupDirect: 1}},                  // no Strait: no line
		{Bench: "c", Unit: "z", Values: map[string]float64{SetupStrait: 1}},                  // no peer: no line
		{Bench: "d", Unit: "w", Values: map[string]float64{SetupStrait: 1, SetupHAProxy: 0}}, // ratio undefined: 0
		{Bench: "e", Unit: "v", Values: map[string]float64{SetupStrait: 1, SetupRawQUIC: 3}},
	}
	ms[0].Fail(SetupStunnel, "rate off")
	// A setup the known columns do not name comes after them.
	want := []Line{
		{Bench: "a", Unit: "x", Strait: 3, Peer: SetupDirect, PeerValue: 4, Ratio: 0.75},
		{Bench: "a", Unit: "x", Strait: 3, Peer: SetupStunnel, PeerValue: 2, Ratio: 1.5, Failed: "stunnel4: rate off"},
		{Bench: "a", Unit: "x", Strait: 3, Peer: "unknown", PeerValue: 1, Ratio: 3},
		{Bench: "d", Unit: "w", Strait: 1, Peer: SetupHAProxy, PeerValue: 0, Ratio: 0},
		{Bench: "e", Unit: "v", Strait: 1, Peer: SetupRawQUIC, PeerValue: 3, Ratio: 0.3333},
	}
	if got := Lines(ms); !slices.Equal(got, want) {
		t.Errorf("Lines:\n got %+v\nwant %+v", got, want)
	}
	var b bytes.Buffer
	if err := WriteJSON(&b, ms); err != nil {
		t.Fatal(err)
	}
	for i, line := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		var l Line
		if err := json.Unmarshal([]byte(line), &l); err != nil || l != want[i] {
			t.Errorf("JSON line %d %s: %+v (%v), want %+v", i, line, l, err, want[i])
		}
	}
}

func TestFormat(t *testing.T) {
	for _, tt := range []struct {
		v    float64
		want string
	}{
		{0, "0.000"}, {0.0123, "0.012"}, {-0.5, "-0.500"}, {1, "1.00"}, {9.999, "10.00"},
		{12.34, "12.3"}, {-12.34, "-12.3"}, {123.4, "123"}, {2048, "2048"},
	} {
		if got := format(tt.v); got != tt.want {
			t.Errorf("format(%v) = %q, want %q", tt.v, got, tt.want)
		}
	}
	if got := round(math.NaN()); got != 0 {
		t.Errorf("round(NaN) = %v, want 0", got)
	}
	if got := round(math.Inf(1)); got != 0 {
		t.Errorf("round(+Inf) = %v, want 0", got)
	}
}

// TestReport renders the metrics of testdata/metrics.json (rows of a real
// run) as the table, the goals and the JSON lines, and as Markdown, and
// compares them with the golden files (go test -run TestReport -update
// rewrites them).
func TestReport(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "metrics.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ms []Metric
	if err := json.Unmarshal(data, &ms); err != nil {
		t.Fatal(err)
	}
	var report, md bytes.Buffer
	if err := Report(&report, Results{Metrics: ms}); err != nil {
		t.Fatal(err)
	}
	WriteMarkdown(&md, ms)
	for name, got := range map[string][]byte{"report.golden": report.Bytes(), "report.md.golden": md.Bytes()} {
		path := filepath.Join("testdata", name)
		if *update {
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs (go test -run TestReport -update rewrites it):\n got:\n%s\nwant:\n%s", name, got, want)
		}
	}
}
