package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/strait-mesh/strait/e2e/wan"
	"github.com/strait-mesh/strait/federation"
)

// PhaseSessions is the phase of issue 16's rows (sessions).
const PhaseSessions = "sessions"

// sessionColdGap spaces the cold samples of the sessions phase: a pooled
// session takes new streams for session.DefaultMaxAge (5 s), so a
// connection opened later than that after the previous one opens a new
// session (the retired one is idle and closes).
const sessionColdGap = 5500 * time.Millisecond

// sessions measures issue 16's pooled sessions beside per-connection mode,
// on three Strait deployments that differ only in the proxies' sessions
// settings, each with a WAN link in front of the west gateway's ingress:
// sessions with pipelining (column strait: the one round trip path),
// sessions at the proxy's default, pipelining off (strait_pipeline_off),
// and per-connection mode (strait_per_conn):
//
//   - ttfb_warm_30ms_rtt: time to first byte of a new connection at WANRTT
//     while a session is open (strait_per_conn has none: per-connection
//     mode has no warm state but the gateways' QUIC);
//   - ttfb_cold_30ms_rtt: the same for a connection that opens a session
//     (each sample after sessionColdGap, so that the previous session
//     takes no more streams), beside per-connection mode's TTFB measured the
//     same way on its own deployment;
//   - new_conns_per_cpu_s: new connections (HTTP request, answer, close)
//     per CPU second of the four Strait processes (both proxies and both
//     gateways), at no added delay, with 16 connections at a time for
//     ConnsDuration, in each mode.
func (e *env) sessions(ctx context.Context) error {
	lctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	var links []*wan.Link
	deploy := func(name, mode, pipeline string) (*Strait, *StraitService, error) {
		svc := &StraitService{Name: "web", Port: 80, App: e.echo.Proxied.String()}
		s, err := e.startStraitSessions(ctx, name, mode, pipeline, func(ingress string) (string, error) {
			addr, err := freeAddr()
			if err != nil {
				return "", err
			}
			l, err := wan.NewLink(wan.LinkConfig{Listen: addr, Backends: []string{ingress}, DisableTCP: true, Logger: e.log.With("component", "wan")})
			if err != nil {
				return "", fmt.Errorf("bench: wan: %w", err)
			}
			links = append(links, l)
			wg.Go(func() { _ = l.Run(lctx) })
			return l.Addr().String(), nil
		}, svc)
		if err != nil {
			return nil, nil, err
		}
		return s, svc, waitHTTP(ctx, svc.Entry, readyTimeout)
	}
	on, onSvc, err := deploy("sessions", "on", "on")
	if err != nil {
		return err
	}
	held, heldSvc, err := deploy("sessions-held", "on", "off")
	if err != nil {
		return err
	}
	off, offSvc, err := deploy("perconn", "off", "")
	if err != nil {
		return err
	}
	setDelay := func(rtt time.Duration) error {
		for _, l := range links {
			if err := l.SetDelay(rtt / 2); err != nil {
				return fmt.Errorf("bench: wan: %w", err)
			}
		}
		return nil
	}
	note := loadNote()
	var errs []error

	// Connections per CPU second, at no added delay.
	perCPU := Metric{Bench: "new_conns_per_cpu_s", Unit: "conns/cpu_s", Values: map[string]float64{}, Note: note}
	d := 5 * time.Second
	if e.cfg.Smoke {
		d = time.Second
	}
	for _, m := range []struct {
		setup string
		s     *Strait
		addr  string
	}{{SetupStrait, on, onSvc.Entry}, {SetupStraitPipelineOff, held, heldSvc.Entry}, {SetupStraitPerConn, off, offSvc.Entry}} {
		v, err := connsPerCPU(ctx, m.s, m.addr, 16, d)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		e.log.Info("new connections per CPU second", "setup", m.setup, "value", v)
		perCPU.Values[m.setup] = v
	}
	e.add(perCPU)

	if err := setDelay(e.cfg.WANRTT); err != nil {
		return errors.Join(append(errs, err)...)
	}
	rttName := fmt.Sprintf("%dms_rtt", e.cfg.WANRTT.Milliseconds())
	warm := []Metric{{Bench: "ttfb_warm_" + rttName + "_p50", Unit: "ms", Values: map[string]float64{}, Note: note},
		{Bench: "ttfb_warm_" + rttName + "_p90", Unit: "ms", Values: map[string]float64{}, Note: note}}
	cold := []Metric{{Bench: "ttfb_cold_" + rttName + "_p50", Unit: "ms", Values: map[string]float64{}, Note: note},
		{Bench: "ttfb_cold_" + rttName + "_p90", Unit: "ms", Values: map[string]float64{}, Note: note}}
	// Warm: a first connection opens the session, the samples reuse it.
	for setup, addr := range map[string]string{SetupStrait: onSvc.Entry, SetupStraitPipelineOff: heldSvc.Entry} {
		if _, err := TTFB(ctx, addr, 1, 10*time.Second); err != nil {
			errs = append(errs, err)
		} else if s, err := TTFB(ctx, addr, e.cfg.TTFBConns, 10*time.Second); err != nil {
			errs = append(errs, err)
		} else {
			warm[0].Values[setup], warm[1].Values[setup] = ms(percentile(s, 0.5)), ms(percentile(s, 0.9))
			e.log.Info("ttfb warm", "setup", setup, "p50", percentile(s, 0.5), "p90", percentile(s, 0.9))
		}
	}
	// Cold: spaced samples in both modes.
	n := max(5, min(e.cfg.TTFBConns/4, 10))
	if e.cfg.Smoke {
		n = 2
	}
	samples := map[string][]time.Duration{}
	for range n {
		// Every sample after the gap, the first too: the warm samples
		// left a session.
		if err := sleepCtx(ctx, sessionColdGap); err != nil {
			return errors.Join(append(errs, err)...)
		}
		for setup, addr := range map[string]string{SetupStrait: onSvc.Entry, SetupStraitPipelineOff: heldSvc.Entry, SetupStraitPerConn: offSvc.Entry} {
			s, err := TTFB(ctx, addr, 1, 10*time.Second)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			samples[setup] = append(samples[setup], s...)
		}
	}
	for setup, s := range samples {
		slices.Sort(s)
		cold[0].Values[setup], cold[1].Values[setup] = ms(percentile(s, 0.5)), ms(percentile(s, 0.9))
		e.log.Info("ttfb cold", "setup", setup, "n", len(s), "p50", percentile(s, 0.5), "p90", percentile(s, 0.9))
	}
	e.add(warm[0])
	e.add(warm[1])
	e.add(cold[0])
	e.add(cold[1])
	return errors.Join(errs...)
}

// startStraitSessions is startStrait with the proxies' sessions and
// sessionPipeline settings ("" for the proxy's default).
func (e *env) startStraitSessions(ctx context.Context, name, mode, pipeline string, via func(string) (string, error), svcs ...*StraitService) (*Strait, error) {
	cli, err := federation.Dial(federation.ClientConfig{Endpoints: []string{e.etcd}})
	if err != nil {
		return nil, fmt.Errorf("bench: etcd: %w", err)
	}
	defer cli.Close()
	s, err := StartStrait(ctx, e.ps, cli, StraitConfig{
		Bin: e.bins.strait, ProxyBin: e.bins.straitProxy, Dir: filepath.Join(e.dir, "strait-"+name), Etcd: e.etcd,
		Prefix: "/bench-" + name + "/", Name: "strait-" + name, WestIngressVia: via, Services: svcs, Sessions: mode,
		SessionPipeline: pipeline,
	})
	if err == nil {
		e.straits = append(e.straits, s)
	}
	return s, err
}

// connsPerCPU opens new connections to addr, conns at a time, for d, each
// an HTTP request read to its end, and returns how many completed per CPU
// second of s's four processes.
func connsPerCPU(ctx context.Context, s *Strait, addr string, conns int, d time.Duration) (float64, error) {
	procs := []*Proc{s.EastProxy, s.EastGW, s.WestGW}
	for _, p := range s.WestProxies {
		procs = append(procs, p)
	}
	cpu := func() (time.Duration, error) {
		var sum time.Duration
		for _, p := range procs {
			u, err := p.Usage()
			if err != nil {
				return 0, err
			}
			sum += u.CPU
		}
		return sum, nil
	}
	req := []byte("GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
	before, err := cpu()
	if err != nil {
		return 0, err
	}
	var done, failed atomic.Int64
	stop := time.Now().Add(d)
	var wg sync.WaitGroup
	for range conns {
		wg.Go(func() {
			for time.Now().Before(stop) && ctx.Err() == nil {
				if err := oneConn(addr, req); err != nil {
					failed.Add(1)
					continue
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	after, err := cpu()
	if err != nil {
		return 0, err
	}
	if f := failed.Load(); f > 0 {
		return 0, fmt.Errorf("bench: %d of %d new connections to %s failed", f, f+done.Load(), addr)
	}
	used := (after - before).Seconds()
	if used <= 0 || done.Load() == 0 {
		return 0, fmt.Errorf("bench: no CPU time or no connection measured (%d connections, %.3f s)", done.Load(), used)
	}
	return float64(done.Load()) / used, nil
}

// oneConn opens a connection, sends req and reads the answer to its end.
func oneConn(addr string, req []byte) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(req); err != nil {
		return err
	}
	n, err := bufio.NewReader(c).Discard(1 << 20)
	if n == 0 {
		return fmt.Errorf("empty answer: %w", err)
	}
	return nil
}

// loadNote names the machine's load average, which the ratios depend on.
func loadNote() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return "load average " + strings.Join(f[:3], " ")
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// PhaseSessionsPath is the phase of issue 16's rows of the data path in
// session mode (sessionsPath).
const PhaseSessionsPath = "sessions_path"

// sessionsPath measures bulk throughput and latency under load through two
// Strait deployments that differ only in the proxies' sessions setting
// (columns strait: sessions on, strait_per_conn: off), at no added delay,
// as the throughput and latency phases measure Strait's main deployment:
//
//   - sessions_throughput_1_stream, sessions_throughput_8_streams: iperf3
//     with 1 and 8 streams (in session mode the control connection and
//     the streams fill sessions of Config.StreamsPerSession streams of
//     package session, 8 by default: two sessions, 8 streams and 1), the
//     median of ThroughputRuns runs;
//   - sessions_latency_p99_1k_1000rps and sessions_added_latency_p99:
//     fortio at QPS with Conns connections, the p99 and what it adds to
//     the direct connection's p99 measured in the same phase (column
//     direct), the median of LatencyRuns runs, each setup in turn.
//
// With ProfileDir set, one more fortio run through each deployment
// afterwards takes CPU profiles of its four processes.
func (e *env) sessionsPath(ctx context.Context) error {
	type deployment struct {
		setup       string
		iperf, http string
		procs       usageSet
		s           *Strait
	}
	var deps []deployment
	for _, d := range []struct{ setup, name, mode string }{
		{SetupStrait, "path-sessions", "on"}, {SetupStraitPerConn, "path-perconn", "off"},
	} {
		pipeline := ""
		if d.mode == "on" {
			pipeline = "on" // as the sessions phase's column strait
		}
		iperf := &StraitService{Name: "iperf", Port: 5201, App: e.iperf, NoProxyHeader: true}
		web := &StraitService{Name: "web", Port: 80, App: e.echo.Proxied.String()}
		s, err := e.startStraitSessions(ctx, d.name, d.mode, pipeline, nil, iperf, web)
		if err != nil {
			return err
		}
		if err := waitHTTP(ctx, web.Entry, readyTimeout); err != nil {
			return err
		}
		deps = append(deps, deployment{d.setup, iperf.Entry, web.Entry, e.straitProcs(s), s})
	}
	note := loadNote()
	var errs []error
	for _, streams := range []int{1, 8} {
		m := Metric{Bench: fmt.Sprintf("sessions_throughput_%d_stream", streams), Unit: "Gbit/s", Values: map[string]float64{}}
		if streams > 1 {
			m.Bench += "s"
		}
		runs := map[string][]float64{}
		for run := range e.cfg.ThroughputRuns {
			for _, d := range deps {
				v, err := Iperf3(ctx, e.bins.iperf3, d.iperf, streams, e.cfg.ThroughputDuration)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				e.log.Info("sessions throughput", "setup", d.setup, "streams", streams, "run", run, "gbps", v)
				runs[d.setup] = append(runs[d.setup], v)
			}
		}
		for setup, vs := range runs {
			m.Values[setup] = median(vs)
		}
		m.Note = note
		e.add(m)
	}

	targets := []latencyTarget{{setup: SetupDirect, addr: e.echo.Plain.String()}}
	for _, d := range deps {
		targets = append(targets, latencyTarget{setup: d.setup, addr: d.http, procs: d.procs})
	}
	accs, lerrs := e.measureLatency(ctx, "sessions-path-", targets)
	errs = append(errs, lerrs...)
	p99 := Metric{Bench: "sessions_latency_p99_1k_1000rps", Unit: "ms", Values: map[string]float64{}, Note: note}
	added := Metric{Bench: "sessions_added_latency_p99", Unit: "ms", Values: map[string]float64{}, Note: note}
	for _, t := range targets {
		a := accs[t.setup]
		if a == nil || a.requests == 0 {
			continue
		}
		p99.Values[t.setup] = median(a.p99)
		if a.rateOff > MaxRateError {
			p99.Fail(t.setup, fmt.Sprintf("achieved %.1f requests/s, %.1f %% off the asked %d (more than %.0f %%)",
				a.rate, 100*a.rateOff, e.cfg.QPS, 100*MaxRateError))
			added.Fail(t.setup, "see "+p99.Bench)
		}
	}
	if d, ok := p99.Values[SetupDirect]; ok {
		for s, v := range p99.Values {
			if s != SetupDirect {
				added.Values[s] = v - d
			}
		}
	}
	e.add(p99)
	e.add(added)
	if e.cfg.ProfileDir != "" {
		// One more fortio run per deployment, profiled: files
		// strait-<role>.pprof and strait_per_conn-<role>.pprof.
		for i, d := range deps {
			errs = append(errs, e.profile(ctx, d.s, targets[i+1], d.setup+"-"))
		}
	}
	return errors.Join(errs...)
}
