package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// iperfResult is the part of iperf3's JSON report the harness reads.
type iperfResult struct {
	End struct {
		SumReceived struct {
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
	} `json:"end"`
	Error string `json:"error"`
}

// iperfBusyRetries bounds the retries of a run that iperf3's server refused
// because it was still closing the previous test (its connections take a
// moment to close through a proxy chain).
const iperfBusyRetries = 10

// Iperf3 runs an iperf3 client against addr with streams parallel streams
// for d (after one omitted warm-up second) and returns the received
// throughput in Gbit/s.
func Iperf3(ctx context.Context, bin, addr string, streams int, d time.Duration) (float64, error) {
	for i := 0; ; i++ {
		v, err := iperf3Once(ctx, bin, addr, streams, d)
		if err == nil || !iperfBusy(err) || i == iperfBusyRetries {
			return v, err
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// iperfBusy reports whether iperf3 failed before it measured anything
// because its server was still busy with (or closing) the previous test: it
// says so ("the server is busy"), or, when the previous test's connections
// were still closing through a relay chain, its control connection was
// reset or closed before the test began.
func iperfBusy(err error) bool {
	for _, s := range []string{"server is busy", "unable to receive control message", "unable to send control message",
		"control socket has closed unexpectedly"} {
		if strings.Contains(err.Error(), s) {
			return true
		}
	}
	return false
}

func iperf3Once(ctx context.Context, bin, addr string, streams int, d time.Duration) (float64, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	secs := strconv.Itoa(max(1, int(d.Round(time.Second)/time.Second)))
	cctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(cctx, bin, "-c", host, "-p", port, "-t", secs, "-O", "1",
		"-P", strconv.Itoa(streams), "-J").Output()
	v, err := parseIperf3(out, err)
	if err != nil {
		return 0, fmt.Errorf("bench: iperf3 %s -P %d: %w", addr, streams, err)
	}
	return v, nil
}

// parseIperf3 reads the received throughput, in Gbit/s, from the JSON
// report (-J) of an iperf3 client that exited with runErr. The error
// iperf3 reports in its JSON comes first: it says more than the exit code.
func parseIperf3(out []byte, runErr error) (float64, error) {
	var r iperfResult
	if err := json.Unmarshal(out, &r); err != nil {
		return 0, fmt.Errorf("%v: report: %w", runErr, err)
	}
	if r.Error != "" {
		return 0, errors.New(r.Error)
	}
	if runErr != nil {
		return 0, runErr
	}
	if r.End.SumReceived.BitsPerSecond <= 0 {
		return 0, errors.New("report has no received throughput")
	}
	return r.End.SumReceived.BitsPerSecond / 1e9, nil
}

// Latency is a fortio run's outcome.
type Latency struct {
	P50, P90, P99 time.Duration
	// Requests is the number of requests completed, OK those answered 200.
	Requests, OK int64
	QPS          float64
	Elapsed      time.Duration
}

// fortioResult is the part of fortio's JSON report the harness reads.
type fortioResult struct {
	ActualQPS         float64
	ActualDuration    int64
	RetCodes          map[string]int64
	DurationHistogram struct {
		Count       int64
		Percentiles []struct {
			Percentile float64
			Value      float64
		}
	}
}

// Fortio runs fortio load at qps with conns connections for d, POSTing
// payload random bytes to url (the echo server returns them), and reads
// the latency percentiles.
func Fortio(ctx context.Context, bin, dir, name, url string, qps, conns, payload int, d time.Duration) (Latency, error) {
	var l Latency
	jsonPath := filepath.Join(dir, "fortio-"+name+".json")
	cctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(cctx, bin, "load", "-qps", strconv.Itoa(qps), "-c", strconv.Itoa(conns),
		"-t", d.String(), "-payload-size", strconv.Itoa(payload), "-p", "50,90,99",
		"-loglevel", "Warning", "-json", jsonPath, url)
	if out, err := cmd.CombinedOutput(); err != nil {
		return l, fmt.Errorf("bench: fortio %s: %w: %s", name, err, tail(out, 1000))
	}
	data, err := os.ReadFile(jsonPath)
	if err != nil {
		return l, fmt.Errorf("bench: fortio %s: %w", name, err)
	}
	if l, err = parseFortio(data); err != nil {
		return l, fmt.Errorf("bench: fortio %s: %w", name, err)
	}
	return l, nil
}

// parseFortio reads a fortio JSON report (-json): the p50, p90 and p99
// latencies, the request counts and the rate. A run where fewer than 99% of
// the requests were answered 200 is an error (with the Latency read).
func parseFortio(data []byte) (Latency, error) {
	var l Latency
	var r fortioResult
	if err := json.Unmarshal(data, &r); err != nil {
		return l, err
	}
	l.QPS, l.Requests, l.OK = r.ActualQPS, r.DurationHistogram.Count, r.RetCodes["200"]
	l.Elapsed = time.Duration(r.ActualDuration)
	for _, p := range r.DurationHistogram.Percentiles {
		v := time.Duration(p.Value * float64(time.Second))
		switch p.Percentile {
		case 50:
			l.P50 = v
		case 90:
			l.P90 = v
		case 99:
			l.P99 = v
		}
	}
	if l.OK == 0 || l.OK < l.Requests*99/100 {
		return l, fmt.Errorf("%d of %d requests answered 200 (%v)", l.OK, l.Requests, r.RetCodes)
	}
	if l.P50 == 0 || l.P90 == 0 || l.P99 == 0 {
		return l, fmt.Errorf("report lacks a percentile of 50, 90, 99: %v", r.DurationHistogram.Percentiles)
	}
	return l, nil
}

// TTFB opens n new connections to addr one after the other; on each it
// sends an HTTP GET and waits for the first byte of the answer. It returns
// the times from the start of the connect to that byte, sorted.
func TTFB(ctx context.Context, addr string, n int, timeout time.Duration) ([]time.Duration, error) {
	req := []byte("GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
	var out []time.Duration
	for i := range n {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		d, err := ttfbOnce(addr, req, timeout)
		if err != nil {
			return nil, fmt.Errorf("bench: ttfb %s (connection %d): %w", addr, i, err)
		}
		out = append(out, d)
	}
	slices.Sort(out)
	return out, nil
}

func ttfbOnce(addr string, req []byte, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(start.Add(timeout))
	if _, err := c.Write(req); err != nil {
		return 0, err
	}
	var b [1]byte
	if _, err := c.Read(b[:]); err != nil {
		return 0, err
	}
	d := time.Since(start)
	// Drain the answer so that the server's close is orderly.
	_, _ = bufio.NewReader(c).Discard(1 << 16)
	return d, nil
}

// httpGet checks that addr answers an HTTP GET, for readiness.
func httpGet(addr string, timeout time.Duration) error {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.Contains(line, " 200 ") {
		return fmt.Errorf("answered %q", strings.TrimSpace(line))
	}
	return nil
}

// waitHTTP retries httpGet until it succeeds or timeout passes.
func waitHTTP(ctx context.Context, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := httpGet(addr, 5*time.Second)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench: %s did not answer within %s: %w", addr, timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// percentile returns the q-quantile (0..1) of sorted samples by nearest
// rank: the smallest sample with at least q of the samples at or below it,
// the ceil(q*n)-th. 0 for no samples.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	// The epsilon keeps a rank that is whole in decimal (0.35*20 = 7) from
	// rounding up to the next one in binary (7.000000000000001).
	i := int(math.Ceil(float64(len(sorted))*q-1e-9)) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
