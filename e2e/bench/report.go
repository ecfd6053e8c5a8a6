package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
)

// Setup names: the columns of the table and the "peer" of the JSON lines.
const (
	SetupStrait    = "strait"
	SetupDirect    = "direct"
	SetupStunnel   = "stunnel4"
	SetupHAProxy   = "haproxy"
	SetupRawQUIC   = "rawquic"
	SetupEtcdWatch = "etcd_watch"
)

// columns is the order of the table's columns.
func columns() []string {
	return []string{SetupStrait, SetupDirect, SetupStunnel, SetupHAProxy, SetupRawQUIC, SetupEtcdWatch}
}

// Metric is one row of results: a value per setup.
type Metric struct {
	Bench string
	Unit  string
	// Values holds the measured value of each setup that ran the bench.
	Values map[string]float64
	// Note explains the row in the table.
	Note string
}

// Line is one JSON line: Strait's value next to one peer's.
type Line struct {
	Bench     string  `json:"bench"`
	Unit      string  `json:"unit"`
	Strait    float64 `json:"strait"`
	Peer      string  `json:"peer"`
	PeerValue float64 `json:"peer_value"`
	Ratio     float64 `json:"ratio"`
}

// Lines turns metrics into JSON lines, one per (bench, peer) pair, in
// column order.
func Lines(ms []Metric) []Line {
	var out []Line
	for _, m := range ms {
		s, ok := m.Values[SetupStrait]
		if !ok {
			continue
		}
		for _, peer := range columns()[1:] {
			v, ok := m.Values[peer]
			if !ok {
				continue
			}
			r := math.NaN()
			if v != 0 {
				r = s / v
			}
			out = append(out, Line{Bench: m.Bench, Unit: m.Unit, Strait: round(s), Peer: peer, PeerValue: round(v), Ratio: round(r)})
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

// WriteTable writes the human table: a row per bench, a column per setup.
func WriteTable(w io.Writer, ms []Metric) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "bench\tunit\t%s\t\n", strings.Join(columns(), "\t"))
	for _, m := range ms {
		fmt.Fprintf(tw, "%s\t%s\t", m.Bench, m.Unit)
		for _, c := range columns() {
			if v, ok := m.Values[c]; ok {
				fmt.Fprintf(tw, "%s\t", format(v))
			} else {
				fmt.Fprint(tw, "-\t")
			}
		}
		fmt.Fprintln(tw)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("bench: table: %w", err)
	}
	return nil
}

// WriteMarkdown writes the table as Markdown, for docs/benchmarks.md.
func WriteMarkdown(w io.Writer, ms []Metric) {
	fmt.Fprintf(w, "| bench | unit | %s |\n|---|---|%s\n", strings.Join(columns(), " | "), strings.Repeat("---:|", len(columns())))
	for _, m := range ms {
		fmt.Fprintf(w, "| %s | %s |", m.Bench, m.Unit)
		for _, c := range columns() {
			if v, ok := m.Values[c]; ok {
				fmt.Fprintf(w, " %s |", format(v))
			} else {
				fmt.Fprint(w, " - |")
			}
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

// Goal is one goal of issue 8, evaluated on a run.
type Goal struct {
	Name   string
	Met    bool
	Detail string
	// Missing is set when a value the goal needs was not measured.
	Missing bool
}

// Goals evaluates the goals of issue 8 on ms.
func Goals(ms []Metric) []Goal {
	get := func(bench, setup string) (float64, bool) {
		for _, m := range ms {
			if m.Bench == bench {
				v, ok := m.Values[setup]
				return v, ok
			}
		}
		return 0, false
	}
	var gs []Goal
	ratioGoal := func(name, bench, peer string, le bool, bound float64) {
		s, ok1 := get(bench, SetupStrait)
		p, ok2 := get(bench, peer)
		if !ok1 || !ok2 || p == 0 {
			gs = append(gs, Goal{Name: name, Missing: true})
			return
		}
		r := s / p
		met := r >= bound
		op := ">="
		if le {
			met, op = r <= bound, "<="
		}
		gs = append(gs, Goal{Name: name, Met: met, Detail: fmt.Sprintf("%s %s / %s = %.3f (goal %s %.2f)", bench, SetupStrait, peer, r, op, bound)})
	}
	ratioGoal("1-stream throughput >= 0.9x raw quic-go", "throughput_1_stream", SetupRawQUIC, false, 0.9)
	ratioGoal("8-stream throughput >= 0.5x stunnel4 pair", "throughput_8_streams", SetupStunnel, false, 0.5)
	if s, ok1 := get("added_latency_p99", SetupStrait); ok1 {
		p, ok2 := get("added_latency_p99", SetupStunnel)
		gs = append(gs, Goal{Name: "added p99 at 1000 rps <= stunnel4 pair's and < 1 ms", Missing: !ok2,
			Met:    ok2 && s <= p && s < 1,
			Detail: fmt.Sprintf("strait +%.3f ms, stunnel4 +%.3f ms", s, p)})
	} else {
		gs = append(gs, Goal{Name: "added p99 at 1000 rps <= stunnel4 pair's and < 1 ms", Missing: true})
	}
	ratioGoal("new-connection TTFB at 30 ms RTT <= 0.55x stunnel4 pair", "ttfb_30ms_rtt_p50", SetupStunnel, true, 0.55)
	cpu, ok1 := get("cpu_per_1k_req_proxy_client", SetupStrait)
	rss, ok2 := get("rss_proxy_client", SetupStrait)
	cpuS, ok3 := get("cpu_per_1k_req_proxy_server", SetupStrait)
	rssS, ok4 := get("rss_proxy_server", SetupStrait)
	gs = append(gs, Goal{Name: "proxy <= 0.05 vCPU and <= 20 MB per 1000 rps", Missing: !(ok1 && ok2 && ok3 && ok4),
		Met: cpu <= 0.05 && rss <= 20 && cpuS <= 0.05 && rssS <= 20,
		Detail: fmt.Sprintf("client proxy %.3f vCPU %.1f MB; server proxy %.3f vCPU %.1f MB (at 1000 rps, vCPU = CPU s per 1000 requests)",
			cpu, rss, cpuS, rssS)})
	if s, ok1 := get("export_propagation_p99", SetupStrait); ok1 {
		p, ok2 := get("export_propagation_p99", SetupEtcdWatch)
		gs = append(gs, Goal{Name: "export propagation p99 <= raw etcd watch p99 + 10 ms", Missing: !ok2, Met: ok2 && s <= p+10,
			Detail: fmt.Sprintf("strait %.2f ms, etcd watch %.2f ms", s, p)})
	} else {
		gs = append(gs, Goal{Name: "export propagation p99 <= raw etcd watch p99 + 10 ms", Missing: true})
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
