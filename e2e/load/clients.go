package load

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/strait-mesh/strait/e2e/netns"
)

// Curl fetches url with curl from inside h and returns the body. timeout
// bounds the whole transfer.
func Curl(ctx context.Context, h *netns.Host, url string, timeout time.Duration, extra ...string) (string, error) {
	args := append([]string{"-sS", "--fail", "--max-time", seconds(timeout)}, extra...)
	out, err := h.Output(ctx, "curl", append(args, url)...)
	if err != nil {
		return string(out), fmt.Errorf("load: curl: %w", err)
	}
	return string(out), nil
}

// WrkResult is what Wrk parses from wrk's report.
type WrkResult struct {
	Requests      int
	RequestsPerS  float64
	Errors        int // socket errors and non-2xx/3xx responses
	P50, P90, P99 time.Duration
	Output        string
}

var (
	wrkReqRE  = regexp.MustCompile(`(\d+) requests in`)
	wrkRateRE = regexp.MustCompile(`Requests/sec:\s+([\d.]+)`)
	wrkPctRE  = regexp.MustCompile(`(?m)^\s+(50|90|99)%\s+([\d.]+)(us|ms|s)\s*$`)
	wrkErrRE  = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	wrkNon2RE = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
)

// Wrk runs wrk from inside h against url with the given threads,
// connections and duration, and parses its report (with --latency).
func Wrk(ctx context.Context, h *netns.Host, url string, threads, conns int, d time.Duration) (WrkResult, error) {
	out, err := h.Output(ctx, "wrk", "-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns),
		"-d", wholeSeconds(d)+"s", "--latency", url)
	res := WrkResult{Output: string(out)}
	if err != nil {
		return res, fmt.Errorf("load: wrk: %w", err)
	}
	s := string(out)
	if m := wrkReqRE.FindStringSubmatch(s); m != nil {
		res.Requests, _ = strconv.Atoi(m[1])
	}
	if m := wrkRateRE.FindStringSubmatch(s); m != nil {
		res.RequestsPerS, _ = strconv.ParseFloat(m[1], 64)
	}
	for _, m := range wrkPctRE.FindAllStringSubmatch(s, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}[m[3]]
		d := time.Duration(v * float64(unit))
		switch m[1] {
		case "50":
			res.P50 = d
		case "90":
			res.P90 = d
		case "99":
			res.P99 = d
		}
	}
	if m := wrkErrRE.FindStringSubmatch(s); m != nil {
		for _, n := range m[1:] {
			v, _ := strconv.Atoi(n)
			res.Errors += v
		}
	}
	if m := wrkNon2RE.FindStringSubmatch(s); m != nil {
		v, _ := strconv.Atoi(m[1])
		res.Errors += v
	}
	if res.Requests == 0 {
		return res, fmt.Errorf("load: wrk: no requests in report:\n%s", s)
	}
	return res, nil
}

// Iperf3Server starts `iperf3 -s` on h at addr:port; stop it with Kill.
func Iperf3Server(h *netns.Host, port int) (*netns.Proc, error) {
	return h.StartProc(netns.ProcConfig{Path: "iperf3", Args: []string{"-s", "-B", h.Addr().String(), "-p", strconv.Itoa(port)}, Label: "iperf3-server"})
}

// Iperf3Result is what Iperf3 parses from iperf3's JSON report.
type Iperf3Result struct {
	SentBitsPerS, ReceivedBitsPerS float64
	Retransmits                    int
}

// Iperf3 runs an iperf3 TCP client from inside h to addr:port with streams
// parallel streams for d.
func Iperf3(ctx context.Context, h *netns.Host, addr string, port, streams int, d time.Duration) (Iperf3Result, error) {
	out, err := h.Output(ctx, "iperf3", "-c", addr, "-p", strconv.Itoa(port), "-P", strconv.Itoa(streams),
		"-t", wholeSeconds(d), "-J")
	var res Iperf3Result
	if err != nil {
		return res, fmt.Errorf("load: iperf3: %w: %s", err, out)
	}
	var rep struct {
		End struct {
			SumSent struct {
				BitsPerSecond float64 `json:"bits_per_second"`
				Retransmits   int     `json:"retransmits"`
			} `json:"sum_sent"`
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		return res, fmt.Errorf("load: iperf3 report: %w", err)
	}
	if rep.Error != "" {
		return res, fmt.Errorf("load: iperf3: %s", rep.Error)
	}
	return Iperf3Result{SentBitsPerS: rep.End.SumSent.BitsPerSecond, ReceivedBitsPerS: rep.End.SumReceived.BitsPerSecond,
		Retransmits: rep.End.SumSent.Retransmits}, nil
}

func seconds(d time.Duration) string {
	s := strconv.FormatFloat(d.Seconds(), 'f', 3, 64)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	if s == "" || s == "0" {
		return "1"
	}
	return s
}

func wholeSeconds(d time.Duration) string {
	return strconv.Itoa(max(1, int(d.Round(time.Second).Seconds())))
}

// FortioResult is what Fortio parses from `fortio load -json`.
type FortioResult struct {
	ActualQPS           float64
	Count               int // requests with a response
	Errors              int // requests that failed
	P50, P90, P99, P999 time.Duration
	RetCodes            map[string]int
}

// Fortio runs `fortio load` (the binary at path, from toolbin.Path(ctx,
// "fortio")) from inside h against url at qps requests per second over conns
// connections for d, and parses its JSON report. extra goes before the URL
// (e.g. "-payload-size", "1024").
func Fortio(ctx context.Context, h *netns.Host, path, url string, qps, conns int, d time.Duration, extra ...string) (FortioResult, error) {
	args := append([]string{"load", "-qps", strconv.Itoa(qps), "-c", strconv.Itoa(conns), "-t", d.String(), "-json", "-"}, extra...)
	out, err := h.Output(ctx, path, append(args, url)...)
	var res FortioResult
	if err != nil {
		return res, fmt.Errorf("load: fortio: %w", err)
	}
	var rep struct {
		ActualQPS         float64
		RetCodes          map[string]int
		DurationHistogram struct {
			Count       int
			Percentiles []struct {
				Percentile float64
				Value      float64 // seconds
			}
		}
		ErrorsDurationHistogram struct{ Count int }
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		return res, fmt.Errorf("load: fortio report: %w", err)
	}
	res = FortioResult{ActualQPS: rep.ActualQPS, Count: rep.DurationHistogram.Count,
		Errors: rep.ErrorsDurationHistogram.Count, RetCodes: rep.RetCodes}
	for _, p := range rep.DurationHistogram.Percentiles {
		v := time.Duration(p.Value * float64(time.Second))
		switch p.Percentile {
		case 50:
			res.P50 = v
		case 90:
			res.P90 = v
		case 99:
			res.P99 = v
		case 99.9:
			res.P999 = v
		}
	}
	return res, nil
}
