package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
)

// Setup names: the columns of the table and the "peer" of the JSON lines.
const (
	SetupStrait  = "strait"
	SetupDirect  = "direct"
	SetupStunnel = "stunnel4"
	SetupHAProxy = "haproxy"
	// SetupHAProxySNI is the Istio multi-network shape: client haproxy →
	// SNI-routing east-west gateway haproxy (passthrough) → server haproxy.
	SetupHAProxySNI = "haproxy_sni"
	SetupRawQUIC    = "rawquic"
	// SetupRawQUIC4 is rawquic with a TCP relay on each side: 4 hops, as
	// Strait's proxy → gateway → gateway → proxy.
	SetupRawQUIC4  = "rawquic_4hop"
	SetupEtcdWatch = "etcd_watch"
	// SetupStraitPerConn is the column issue 16's new_conns_per_cpu_s row
	// compares pooled sessions with (Strait in per-connection mode).
	SetupStraitPerConn = "strait_per_conn"
	// SetupStraitPipelineOff is Strait with sessions at the proxy's
	// default, pipelining off (a new stream's bytes wait for the answer),
	// beside the column strait, which pipelines, in issue 16's rows.
	SetupStraitPipelineOff = "strait_pipeline_off"
)

// columns is the order of the table's known columns.
func columns() []string {
	return []string{SetupStrait, SetupDirect, SetupStunnel, SetupHAProxy, SetupHAProxySNI, SetupRawQUIC, SetupRawQUIC4, SetupEtcdWatch}
}

// columnsOf is columns followed by any other setup ms has a value for,
// sorted: a row set added later may bring a setup of its own.
func columnsOf(ms []Metric) []string {
	cols := columns()
	var extra []string
	for _, m := range ms {
		for s := range m.Values {
			if !slices.Contains(cols, s) && !slices.Contains(extra, s) {
				extra = append(extra, s)
			}
		}
	}
	slices.Sort(extra)
	return append(cols, extra...)
}

// Metric is one row of results: a value per setup.
type Metric struct {
	Bench string
	Unit  string
	// Values holds the measured value of each setup that ran the bench.
	Values map[string]float64
	// Failed marks values that were measured but must not be trusted, with
	// the reason (e.g. a latency run whose achieved rate was off the asked
	// one): the table shows them with a "!", goals that need them are not
	// met.
	Failed map[string]string `json:",omitempty"`
	// Note explains the row (e.g. why a cell is empty); printed under the
	// table.
	Note string `json:",omitempty"`
}

// Fail marks setup's value of m failed for why.
func (m *Metric) Fail(setup, why string) {
	if m.Failed == nil {
		m.Failed = map[string]string{}
	}
	m.Failed[setup] = why
}

// Line is one JSON line: Strait's value next to one peer's.
type Line struct {
	Bench     string  `json:"bench"`
	Unit      string  `json:"unit"`
	Strait    float64 `json:"strait"`
	Peer      string  `json:"peer"`
	PeerValue float64 `json:"peer_value"`
	Ratio     float64 `json:"ratio"`
	// Failed is the reason Strait's or the peer's value is marked failed.
	Failed string `json:"failed,omitempty"`
}

// Lines turns metrics into JSON lines, one per (bench, peer) pair, in
// column order.
func Lines(ms []Metric) []Line {
	var out []Line
	cols := columnsOf(ms)
	for _, m := range ms {
		s, ok := m.Values[SetupStrait]
		if !ok {
			continue
		}
		for _, peer := range cols[1:] {
			v, ok := m.Values[peer]
			if !ok {
				continue
			}
			r := math.NaN()
			if v != 0 {
				r = s / v
			}
			failed := m.Failed[SetupStrait]
			if f := m.Failed[peer]; f != "" {
				failed = strings.TrimPrefix(failed+"; "+peer+": "+f, "; ")
			} else if failed != "" {
				failed = "strait: " + failed
			}
			out = append(out, Line{Bench: m.Bench, Unit: m.Unit, Strait: round(s), Peer: peer, PeerValue: round(v), Ratio: round(r), Failed: failed})
		}
	}
	return out
}

func round(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	return math.Round(v*1e4) / 1e4
}

// WriteJSON writes one JSON object per line.
func WriteJSON(w io.Writer, ms []Metric) error {
	enc := json.NewEncoder(w)
	for _, l := range Lines(ms) {
		if err := enc.Encode(l); err != nil {
			return fmt.Errorf("bench: json: %w", err)
		}
	}
	return nil
}

// WriteTable writes the human table: a row per bench, a column per setup;
// a value marked failed ends in "!".
func WriteTable(w io.Writer, ms []Metric) error {
	cols := columnsOf(ms)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "bench\tunit\t%s\t\n", strings.Join(cols, "\t"))
	for _, m := range ms {
		fmt.Fprintf(tw, "%s\t%s\t", m.Bench, m.Unit)
		for _, c := range cols {
			fmt.Fprintf(tw, "%s\t", cell(m, c))
		}
		fmt.Fprintln(tw)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("bench: table: %w", err)
	}
	return nil
}

func cell(m Metric, setup string) string {
	v, ok := m.Values[setup]
	if !ok {
		return "-"
	}
	if m.Failed[setup] != "" {
		return format(v) + "!"
	}
	return format(v)
}

// WriteNotes writes the rows' notes and the reasons of their failed values.
func WriteNotes(w io.Writer, ms []Metric) {
	for _, m := range ms {
		if m.Note != "" {
			fmt.Fprintf(w, "note %s: %s\n", m.Bench, m.Note)
		}
		for _, s := range slices.Sorted(maps.Keys(m.Failed)) {
			fmt.Fprintf(w, "FAILED %s %s: %s\n", m.Bench, s, m.Failed[s])
		}
	}
}

// WriteMarkdown writes the table as Markdown, for docs/benchmarks.md.
func WriteMarkdown(w io.Writer, ms []Metric) {
	cols := columnsOf(ms)
	fmt.Fprintf(w, "| bench | unit | %s |\n|---|---|%s\n", strings.Join(cols, " | "), strings.Repeat("---:|", len(cols)))
	for _, m := range ms {
		fmt.Fprintf(w, "| %s | %s |", m.Bench, m.Unit)
		for _, c := range cols {
			fmt.Fprintf(w, " %s |", cell(m, c))
		}
		fmt.Fprintln(w)
	}
}

func format(v float64) string {
	switch a := math.Abs(v); {
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}

// Goal is one goal of issue 8, 15 or 16, evaluated on a run.
type Goal struct {
	Name   string
	Met    bool
	Detail string
	// Missing is set when a value the goal needs was not measured.
	Missing bool
}

// Bounds of the goals that are not ratios between two setups.
const (
	// ProxyMaxRSS, ProxyMaxAnon and ProxyMaxCPU bound each proxy at 1000
	// rps (issue 15 part 2), in MB (10^6 bytes) and CPU seconds per 1000
	// requests.
	ProxyMaxRSS  = 20
	ProxyMaxAnon = 12
	ProxyMaxCPU  = 0.05
	// PropagationMaxRatio bounds export propagation p99 against the raw
	// etcd watch's p99 on the same etcd.
	PropagationMaxRatio = 2.0
	// WarmTTFBMax is issue 16's bound of a new connection's time to first
	// byte at 30 ms RTT on a warm pooled session (1 RTT + 5 ms), in ms.
	WarmTTFBMax = 35
)

// goalRows reads ms for the goals.
type goalRows []Metric

func (ms goalRows) get(bench, setup string) (v float64, ok bool, failed string) {
	for _, m := range ms {
		if m.Bench == bench {
			v, ok = m.Values[setup]
			return v, ok, m.Failed[setup]
		}
	}
	return 0, false, ""
}

func (ms goalRows) has(bench string) bool {
	for _, m := range ms {
		if m.Bench == bench {
			return true
		}
	}
	return false
}

// ratio judges strait's value of bench against peer's (le: ratio ≤
// bound, else ≥ bound). peer may be SetupStrait with otherBench: a ratio
// between two of Strait's rows.
func (ms goalRows) ratio(name, bench, peer, otherBench string, le bool, bound float64) Goal {
	if otherBench == "" {
		otherBench = bench
	}
	s, ok1, f1 := ms.get(bench, SetupStrait)
	p, ok2, f2 := ms.get(otherBench, peer)
	if !ok1 || !ok2 || p == 0 {
		return Goal{Name: name, Missing: true}
	}
	r := s / p
	met, op := r >= bound, ">="
	if le {
		met, op = r <= bound, "<="
	}
	d := fmt.Sprintf("%s %s / %s %s = %.3f (goal %s %.2f)", bench, SetupStrait, otherBench, peer, r, op, bound)
	if otherBench == bench {
		d = fmt.Sprintf("%s %s / %s = %.3f (goal %s %.2f)", bench, SetupStrait, peer, r, op, bound)
	}
	return failedGoal(Goal{Name: name, Met: met, Detail: d}, f1, f2)
}

// failedGoal is g not met when a value it used is marked failed.
func failedGoal(g Goal, failed ...string) Goal {
	for _, f := range failed {
		if f != "" {
			g.Met = false
			g.Detail += "; value marked failed: " + f
		}
	}
	return g
}

// Goals evaluates the goals on ms: issue 8's, issue 15's (parts 2, 3 and
// 4; part 1 is how the rows are measured) and, when their rows are present,
// issue 16's.
func Goals(ms []Metric) []Goal {
	rows := goalRows(ms)
	var gs []Goal
	gs = append(gs,
		rows.ratio("issue 8: 1-stream throughput >= 0.9x raw quic-go", "throughput_1_stream", SetupRawQUIC, "", false, 0.9),
		rows.ratio("issue 8: 8-stream throughput >= 0.5x stunnel4 pair", "throughput_8_streams", SetupStunnel, "", false, 0.5))
	{
		const name = "issue 8: added p99 at 1000 rps <= stunnel4 pair's and < 1 ms"
		s, ok1, f1 := rows.get("added_latency_p99", SetupStrait)
		p, ok2, f2 := rows.get("added_latency_p99", SetupStunnel)
		if ok1 && ok2 {
			gs = append(gs, failedGoal(Goal{Name: name, Met: s <= p && s < 1,
				Detail: fmt.Sprintf("strait +%.3f ms, stunnel4 +%.3f ms", s, p)}, f1, f2))
		} else {
			gs = append(gs, Goal{Name: name, Missing: true})
		}
	}
	gs = append(gs,
		rows.ratio("issue 8: new-connection TTFB at 30 ms RTT <= 0.55x stunnel4 pair", "ttfb_30ms_rtt_p50", SetupStunnel, "", true, 0.55),
		rows.ratio(fmt.Sprintf("issue 8/15: export propagation p99 <= %.1fx raw etcd watch p99", PropagationMaxRatio),
			"export_propagation_p99", SetupEtcdWatch, "", true, PropagationMaxRatio))
	gs = append(gs, proxyGoal(rows),
		rows.ratio("issue 15.3: 8-stream throughput >= 1.0x rawquic's 8 streams", "throughput_8_streams", SetupRawQUIC, "", false, 1.0),
		rows.ratio("issue 15.3: 8-stream throughput >= 1.3x Strait's 1 stream", "throughput_8_streams", SetupStrait, "throughput_1_stream", false, 1.3))
	{
		const name = "issue 15.4: added p99 at 1000 rps <= haproxy SNI-gateway chain's"
		s, ok1, f1 := rows.get("added_latency_p99", SetupStrait)
		p, ok2, f2 := rows.get("added_latency_p99", SetupHAProxySNI)
		if ok1 && ok2 {
			gs = append(gs, failedGoal(Goal{Name: name, Met: s <= p,
				Detail: fmt.Sprintf("strait +%.3f ms, haproxy_sni +%.3f ms", s, p)}, f1, f2))
		} else {
			gs = append(gs, Goal{Name: name, Missing: true})
		}
	}
	gs = append(gs, rows.ratio("issue 15.4: CPU per 1000 requests <= 1.5x haproxy SNI-gateway chain's", "cpu_per_1k_req_total", SetupHAProxySNI, "", true, 1.5))
	return append(gs, issue16Goals(rows)...)
}

// proxyGoal is issue 15 part 2: each proxy at 1000 rps within RSS, RssAnon
// and CPU bounds.
func proxyGoal(rows goalRows) Goal {
	name := fmt.Sprintf("issue 15.2: each proxy at 1000 rps RSS <= %d MB, RssAnon <= %d MB, CPU <= %.2f s per 1000 requests",
		ProxyMaxRSS, ProxyMaxAnon, ProxyMaxCPU)
	met := true
	var details, failed []string
	for _, side := range []struct{ role, name string }{{roleClient, "client"}, {roleServer, "server"}} {
		cpu, ok1, f1 := rows.get("cpu_per_1k_req_"+side.role, SetupStrait)
		rss, ok2, _ := rows.get("rss_"+side.role, SetupStrait)
		anon, ok3, _ := rows.get("rss_anon_"+side.role, SetupStrait)
		if !ok1 || !ok2 || !ok3 {
			return Goal{Name: name, Missing: true}
		}
		met = met && cpu <= ProxyMaxCPU && rss <= ProxyMaxRSS && anon <= ProxyMaxAnon
		details = append(details, fmt.Sprintf("%s proxy %.3f s, %.1f MB RSS, %.1f MB anon", side.name, cpu, rss, anon))
		failed = append(failed, f1)
	}
	return failedGoal(Goal{Name: name, Met: met, Detail: strings.Join(details, "; ")}, failed...)
}

// issue16Goals are issue 16's goals whose rows the run has (pooled
// sessions add them): a warm session's TTFB at 30 ms RTT <= 35 ms, a cold
// one no worse than per-connection mode's, and new connections per CPU
// second >= 3x per-connection mode's (column SetupStraitPerConn).
func issue16Goals(rows goalRows) []Goal {
	var gs []Goal
	row := func(base string) string {
		if rows.has(base + "_p50") {
			return base + "_p50"
		}
		return base
	}
	if warm := row("ttfb_warm_30ms_rtt"); rows.has(warm) {
		const name = "issue 16: warm-session TTFB at 30 ms RTT <= 35 ms"
		if v, ok, f := rows.get(warm, SetupStrait); ok {
			gs = append(gs, failedGoal(Goal{Name: name, Met: v <= WarmTTFBMax, Detail: fmt.Sprintf("%s strait %.1f ms", warm, v)}, f))
		} else {
			gs = append(gs, Goal{Name: name, Missing: true})
		}
	}
	if cold := row("ttfb_cold_30ms_rtt"); rows.has(cold) {
		// Per-connection mode's cold value in the same row when the run
		// has it, else the ttfb rows' Strait value (per-connection too).
		const name = "issue 16: cold TTFB at 30 ms RTT <= per-connection mode's"
		if _, ok, _ := rows.get(cold, SetupStraitPerConn); ok {
			gs = append(gs, rows.ratio(name, cold, SetupStraitPerConn, "", true, 1.0))
		} else {
			gs = append(gs, rows.ratio(name, cold, SetupStrait, "ttfb_30ms_rtt_p50", true, 1.0))
		}
	}
	if rows.has("new_conns_per_cpu_s") {
		gs = append(gs, rows.ratio("issue 16: new connections per CPU second >= 3x per-connection mode's", "new_conns_per_cpu_s", SetupStraitPerConn, "", false, 3))
	}
	return gs
}

// WriteGoals writes one line per goal.
func WriteGoals(w io.Writer, gs []Goal) {
	for _, g := range gs {
		state := "NOT MET"
		switch {
		case g.Missing:
			state = "NOT MEASURED"
		case g.Met:
			state = "met"
		}
		fmt.Fprintf(w, "%-13s %s: %s\n", state, g.Name, g.Detail)
	}
}
