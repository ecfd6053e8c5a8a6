package bench

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// smokeRows is every row a run produces and the setups it has a value for.
var smokeRows = func() map[string][]string {
	all := []string{SetupStrait, SetupDirect, SetupStunnel, SetupHAProxy, SetupHAProxySNI, SetupRawQUIC, SetupRawQUIC4}
	procs := all[:0:0]
	for _, s := range all {
		if s != SetupDirect {
			procs = append(procs, s)
		}
	}
	ttfb := []string{SetupStrait, SetupStunnel, SetupHAProxySNI}
	rtt := fmt.Sprintf("ttfb_%dms_rtt_", DefaultWANRTT.Milliseconds())
	warm := fmt.Sprintf("ttfb_warm_%dms_rtt_", DefaultWANRTT.Milliseconds())
	cold := fmt.Sprintf("ttfb_cold_%dms_rtt_", DefaultWANRTT.Milliseconds())
	rows := map[string][]string{
		"throughput_1_stream": all, "throughput_8_streams": all,
		"latency_p50_1k_1000rps": all, "latency_p90_1k_1000rps": all, "latency_p99_1k_1000rps": all,
		"added_latency_p99": procs, "cpu_per_1k_req_total": procs,
		"ttfb_0ms_rtt_p50": ttfb, "ttfb_0ms_rtt_p90": ttfb, rtt + "p50": ttfb, rtt + "p90": ttfb,
		rtt + "resumption_on_p50": {SetupStunnel, SetupHAProxySNI}, rtt + "resumption_on_p90": {SetupStunnel, SetupHAProxySNI},
		"export_propagation_p50": {SetupStrait, SetupEtcdWatch}, "export_propagation_p99": {SetupStrait, SetupEtcdWatch},
		// Issue 16's sessions phase (sessions.go).
		warm + "p50": {SetupStrait, SetupStraitPipelineOff}, warm + "p90": {SetupStrait, SetupStraitPipelineOff},
		cold + "p50": {SetupStrait, SetupStraitPipelineOff, SetupStraitPerConn}, cold + "p90": {SetupStrait, SetupStraitPipelineOff, SetupStraitPerConn},
		"new_conns_per_cpu_s": {SetupStrait, SetupStraitPipelineOff, SetupStraitPerConn},
		// Its sessions_path phase.
		"sessions_throughput_1_stream": {SetupStrait, SetupStraitPerConn}, "sessions_throughput_8_streams": {SetupStrait, SetupStraitPerConn},
		"sessions_latency_p99_1k_1000rps": {SetupDirect, SetupStrait, SetupStraitPerConn},
		"sessions_added_latency_p99":      {SetupStrait, SetupStraitPerConn},
	}
	// Only the setups that have such a process have a gateway value:
	// nothing is copied from another row.
	perRole := map[string][]string{
		roleClient: procs, roleServer: procs,
		roleGWEast: {SetupStrait, SetupRawQUIC4},
		roleGWWest: {SetupStrait, SetupHAProxySNI, SetupRawQUIC4},
	}
	for r, setups := range perRole {
		rows["cpu_per_1k_req_"+r], rows["rss_"+r], rows["rss_anon_"+r] = setups, setups, setups
	}
	return rows
}()

// checkTLS checks the negotiated parameters a run read: every setup with
// TLS has them, from handshakes it counted, and resumption is what each
// setup was configured for (none resumed with it off, some with it on).
func checkTLS(t *testing.T, infos []TLSInfo) {
	t.Helper()
	seen := map[string]bool{}
	for _, ti := range infos {
		seen[ti.Setup+"/"+ti.Resumption] = true
		if ti.Handshakes == 0 || ti.Version == "" {
			t.Errorf("tls %s/%s %s (%s): %d handshakes, version %q", ti.Setup, ti.Resumption, ti.Hop, ti.Source, ti.Handshakes, ti.Version)
		}
		if strings.Contains(ti.Source, "log") && ti.Setup != SetupRawQUIC && ti.Setup != SetupRawQUIC4 && ti.Cipher == "" {
			t.Errorf("tls %s/%s %s (%s): no cipher", ti.Setup, ti.Resumption, ti.Hop, ti.Source)
		}
		if (ti.Setup == SetupStunnel || ti.Setup == SetupHAProxy || ti.Setup == SetupHAProxySNI) && ti.Cipher != PeerCipherSuite {
			t.Errorf("tls %s/%s %s (%s): cipher %q, want only %s", ti.Setup, ti.Resumption, ti.Hop, ti.Source, ti.Cipher, PeerCipherSuite)
		}
		switch {
		case ti.Resumption == "off" && ti.Resumed > 0:
			t.Errorf("tls %s %s (%s): %d of %d handshakes resumed with resumption off", ti.Setup, ti.Hop, ti.Source, ti.Resumed, ti.Handshakes)
		case ti.Resumption == "on" && !strings.Contains(ti.Source, "probe") && ti.Resumed <= 0:
			t.Errorf("tls %s %s (%s): no handshake of %d resumed with resumption on", ti.Setup, ti.Hop, ti.Source, ti.Handshakes)
		}
	}
	for _, want := range []string{SetupStunnel + "/off", SetupStunnel + "/on", SetupHAProxy + "/off", SetupHAProxySNI + "/off",
		SetupHAProxySNI + "/on", SetupRawQUIC + "/off", SetupRawQUIC4 + "/off", SetupStrait + "/off"} {
		if !seen[want] {
			t.Errorf("no TLS parameters of %s", want)
		}
	}
	groups := map[string]bool{}
	for _, ti := range infos {
		if ti.Group != "" {
			groups[ti.Setup] = true
		}
	}
	for _, s := range []string{SetupStunnel, SetupHAProxy, SetupHAProxySNI, SetupRawQUIC, SetupRawQUIC4, SetupStrait} {
		if !groups[s] {
			t.Errorf("no key exchange group measured for %s", s)
		}
	}
}

// TestSmoke runs the whole harness in its smoke mode (straitbench -smoke:
// every phase, one second per setup) and checks that every row is produced
// with a value for every setup it compares, that each value is a positive
// number (added latency may be negative, CPU time 0), and that every goal
// could be judged. It checks the harness, not the numbers. It needs iperf3, stunnel4
// and haproxy (.ci/run installs them) and fails without them under CI=true.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("the harness smoke takes about two minutes")
	}
	for _, tool := range []string{"iperf3", "stunnel4", "haproxy"} {
		if _, err := exec.LookPath(tool); err != nil {
			msg := fmt.Sprintf("%s not found (the Debian packages iperf3, stunnel4 and haproxy; .ci/run installs them): %v", tool, err)
			if os.Getenv("CI") == "true" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
	repo, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	start := time.Now()
	res, err := Run(context.Background(), Config{
		Repo: repo, WorkDir: t.TempDir(), Smoke: true, Timeout: 8 * time.Minute,
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	t.Logf("smoke run took %s", time.Since(start).Round(time.Millisecond))
	var table bytes.Buffer
	if rerr := Report(&table, res); rerr != nil {
		t.Error(rerr)
	}
	t.Logf("report:\n%s", table.String())
	if err != nil {
		t.Fatalf("run failed: %v\nwarnings and errors:\n%s", err, logs.String())
	}
	ms := res.Metrics
	got := map[string]Metric{}
	for _, m := range ms {
		if _, dup := got[m.Bench]; dup {
			t.Errorf("row %s produced twice", m.Bench)
		}
		got[m.Bench] = m
	}
	for bench, setups := range smokeRows {
		m, ok := got[bench]
		if !ok {
			t.Errorf("row %s missing", bench)
			continue
		}
		if m.Unit == "" {
			t.Errorf("row %s has no unit", bench)
		}
		for _, s := range setups {
			v, ok := m.Values[s]
			switch {
			case !ok:
				t.Errorf("row %s has no value for %s", bench, s)
			case v < 0 && !strings.HasSuffix(bench, "added_latency_p99"), v == 0 && !strings.HasPrefix(bench, "cpu_") && !strings.HasSuffix(bench, "added_latency_p99"):
				// CPU time is read in clock ticks (10 ms): a second
				// of load may read 0 on a fast machine.
				t.Errorf("row %s: %s = %v, want a positive value", bench, s, v)
			}
		}
		for s := range m.Values {
			if !slices.Contains(setups, s) {
				t.Errorf("row %s has a value for %s, which it does not compare", bench, s)
			}
		}
	}
	for bench := range got {
		if _, ok := smokeRows[bench]; !ok {
			t.Errorf("row %s is not in the list of rows this test checks: add it", bench)
		}
	}
	checkTLS(t, res.TLS)
	for _, g := range Goals(ms) {
		if g.Missing {
			t.Errorf("goal %q could not be judged", g.Name)
		}
	}
	if strings.Contains(table.String(), "NOT MEASURED") {
		t.Error("the report has goals NOT MEASURED")
	}
}
