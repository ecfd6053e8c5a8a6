package bench

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The fixtures are real reports: iperf3 3.12 -J (two streams on loopback,
// and a refused connection), fortio 1.66.0 load -json against fortio's echo
// server (all answered 200, and with ?status=503:50).

func TestParseIperf3(t *testing.T) {
	exit := errors.New("exit status 1")
	for _, tt := range []struct {
		file    string
		raw     string
		runErr  error
		want    float64
		wantErr string
	}{
		{file: "iperf3-2streams.json", want: 2.25563315203134},
		{file: "iperf3-2streams.json", runErr: exit, wantErr: "exit status 1"},
		{file: "iperf3-refused.json", runErr: exit, wantErr: "unable to connect to server: Connection refused"},
		{file: "iperf3-refused.json", wantErr: "unable to connect to server"},
		{raw: "", runErr: exit, wantErr: "exit status 1: report"},
		{raw: `{"end":{}}`, wantErr: "no received throughput"},
	} {
		out := []byte(tt.raw)
		if tt.file != "" {
			var err error
			if out, err = os.ReadFile(filepath.Join("testdata", tt.file)); err != nil {
				t.Fatal(err)
			}
		}
		got, err := parseIperf3(out, tt.runErr)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s %q (run error %v): %v, %v; want an error with %q", tt.file, tt.raw, tt.runErr, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%s: %v, %v; want %v Gbit/s", tt.file, got, err, tt.want)
		}
	}
}

func TestParseFortio(t *testing.T) {
	us := func(v float64) time.Duration { return time.Duration(v * float64(time.Second)) }
	for _, tt := range []struct {
		file    string
		raw     string
		want    Latency
		wantErr string
	}{
		{file: "fortio-200.json", want: Latency{
			P50: us(0.0005293676875000001), P90: us(0.0009342126875), P99: us(0.003),
			Requests: 200, OK: 200, QPS: 199.90752517774308, Elapsed: 1000462588,
		}},
		{file: "fortio-53pct-503.json", wantErr: "47 of 100 requests answered 200"},
		{raw: `{"RetCodes":{"200":100},"DurationHistogram":{"Count":101,"Percentiles":[{"Percentile":50,"Value":0.001},{"Percentile":90,"Value":0.002},{"Percentile":99,"Value":0.003}]}}`},
		{raw: `{"RetCodes":{"200":98},"DurationHistogram":{"Count":100,"Percentiles":[{"Percentile":50,"Value":0.001},{"Percentile":90,"Value":0.002},{"Percentile":99,"Value":0.003}]}}`, wantErr: "98 of 100"},
		{raw: `{"RetCodes":{"200":10},"DurationHistogram":{"Count":10,"Percentiles":[{"Percentile":50,"Value":0.001}]}}`, wantErr: "lacks a percentile"},
		{raw: `{"RetCodes":{},"DurationHistogram":{"Count":0}}`, wantErr: "0 of 0 requests"},
		{raw: `not json`, wantErr: "invalid character"},
	} {
		data := []byte(tt.raw)
		if tt.file != "" {
			var err error
			if data, err = os.ReadFile(filepath.Join("testdata", tt.file)); err != nil {
				t.Fatal(err)
			}
		}
		got, err := parseFortio(data)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s %s: %+v, %v; want an error with %q", tt.file, tt.raw, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s %s: %v", tt.file, tt.raw, err)
			continue
		}
		if tt.file != "" && got != tt.want {
			t.Errorf("%s: %+v, want %+v", tt.file, got, tt.want)
		}
	}
}

func TestIperfBusy(t *testing.T) {
	for _, tt := range []struct {
		err  string
		want bool
	}{
		{"the server is busy running a test. try again later", true},
		{"unable to receive control message: Connection reset by peer", true},
		{"unable to send control message: Bad file descriptor", true},
		{"control socket has closed unexpectedly", true},
		{"unable to connect to server: Connection refused", false},
		{"report has no received throughput", false},
	} {
		if got := iperfBusy(errors.New(tt.err)); got != tt.want {
			t.Errorf("iperfBusy(%q) = %v, want %v", tt.err, got, tt.want)
		}
	}
}
