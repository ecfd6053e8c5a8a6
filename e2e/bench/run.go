package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/strait-mesh/strait/e2e/toolbin"
	"github.com/strait-mesh/strait/e2e/wan"
	"github.com/strait-mesh/strait/federation"
)

// Defaults of Config.
const (
	DefaultThroughputDuration = 2 * time.Second
	DefaultThroughputRuns     = 5
	DefaultLatencyDuration    = 12 * time.Second
	DefaultLatencyRuns        = 3
	DefaultQPS                = 1000
	DefaultConns              = 8
	DefaultPayload            = 1024
	DefaultTTFBConns          = 20
	DefaultWANRTT             = 30 * time.Millisecond
	DefaultWatchers           = 10
	DefaultWrites             = 100
	// DefaultTimeout bounds the whole run.
	DefaultTimeout = 10 * time.Minute
)

// Config configures Run. Zero values mean the documented defaults.
type Config struct {
	// Repo is the root of the Strait repository, where the strait and
	// rawquic binaries are built from. Zero means the working directory.
	Repo string
	// WorkDir keeps configs, logs and binaries. Zero means a new temporary
	// directory, removed at the end unless Keep is set.
	WorkDir string
	Keep    bool
	// ThroughputDuration is the measured length of one iperf3 run (one
	// more second is run and omitted). Zero means 2s.
	ThroughputDuration time.Duration
	// ThroughputRuns is the number of iperf3 runs per setup and stream
	// count; the median is reported. The setups take turns, so that a
	// change in the machine's load touches them all. Zero means 5.
	ThroughputRuns int
	// LatencyDuration is the fortio time per setup, split into LatencyRuns
	// runs. Zero means 12s.
	LatencyDuration time.Duration
	// LatencyRuns is the number of fortio runs per setup; the setups take
	// turns and each percentile is the median over the runs. Zero means 3.
	LatencyRuns int
	// QPS, Conns and Payload shape the fortio load. Zero means 1000
	// requests per second over 8 connections, 1 KiB each way.
	QPS, Conns, Payload int
	// TTFBConns is the number of new connections per time-to-first-byte
	// sample set. Zero means 20.
	TTFBConns int
	// WANRTT is the round trip the WAN emulator adds. Zero means 30ms.
	WANRTT time.Duration
	// Watchers and Writes shape the propagation runs. Zero means 10
	// caches and 100 writes.
	Watchers, Writes int
	// Only, when non-empty, limits the run to these phases: throughput,
	// latency, ttfb, propagation.
	Only []string
	// RawQUICConns is the number of QUIC connections the rawquic client
	// spreads its streams over. Zero means 1, as Strait's gateway uses.
	RawQUICConns int
	// StraitEnv are extra environment variables (KEY=value) of Strait's
	// gateways and proxies, e.g. GOMAXPROCS=1 for an experiment.
	StraitEnv []string
	// PerfDir, when set, records a perf profile (perf record -g) of Strait's
	// gateways and proxies during each of Strait's iperf3 runs into
	// PerfDir/strait-<streams>.perf.data. perf must be installed.
	PerfDir string
	// Timeout bounds the run. Zero means 10m.
	Timeout time.Duration
	// Smoke makes the run as short as it can be while it still produces
	// every row: it replaces the durations and counts above with one run
	// of one second per setup and phase, SmokeTTFBConns new connections and
	// SmokeWrites writes to SmokeWatchers caches. The values it gives
	// prove that the harness works end to end (CI runs it), not how fast
	// anything is.
	Smoke bool
	// Logger receives progress. Nil means text on stderr.
	Logger *slog.Logger
}

// What Config.Smoke runs.
const (
	SmokeTTFBConns = 5
	SmokeWatchers  = 3
	SmokeWrites    = 10
)

func (c Config) withDefaults() Config {
	if c.Smoke {
		c.ThroughputDuration, c.ThroughputRuns = time.Second, 1
		c.LatencyDuration, c.LatencyRuns = time.Second, 1
		c.TTFBConns, c.Watchers, c.Writes = SmokeTTFBConns, SmokeWatchers, SmokeWrites
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	defInt := func(d *int, v int) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.ThroughputDuration, DefaultThroughputDuration)
	def(&c.LatencyDuration, DefaultLatencyDuration)
	def(&c.WANRTT, DefaultWANRTT)
	def(&c.Timeout, DefaultTimeout)
	defInt(&c.ThroughputRuns, DefaultThroughputRuns)
	defInt(&c.LatencyRuns, DefaultLatencyRuns)
	defInt(&c.QPS, DefaultQPS)
	defInt(&c.Conns, DefaultConns)
	defInt(&c.Payload, DefaultPayload)
	defInt(&c.TTFBConns, DefaultTTFBConns)
	defInt(&c.Watchers, DefaultWatchers)
	defInt(&c.Writes, DefaultWrites)
	if c.Repo == "" {
		c.Repo = "."
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return c
}

func (c Config) phase(name string) bool {
	if len(c.Only) == 0 {
		return true
	}
	for _, p := range c.Only {
		if p == name {
			return true
		}
	}
	return false
}

// bins are the programs the harness runs.
type bins struct {
	strait, rawquic, fortio, etcd, iperf3, stunnel, haproxy string
}

// env is what every phase shares.
type env struct {
	cfg   Config
	log   *slog.Logger
	dir   string
	ps    *Procs
	bins  bins
	cert  *Cert
	echo  *EchoServer
	iperf string // iperf3 server address
	etcd  string // etcd client URL

	stunnel, haproxy, rawquic *Pair
	strait                    *Strait
	straitSvcs                map[string]*StraitService

	metrics []Metric
}

func (e *env) add(m Metric) { e.metrics = append(e.metrics, m) }

// Run runs every phase and returns the metrics measured. A phase that fails
// is reported in the returned error and the others still run; every process
// started is stopped before Run returns.
func Run(ctx context.Context, cfg Config) ([]Metric, error) {
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	e := &env{cfg: cfg, log: cfg.Logger, dir: cfg.WorkDir}
	if e.dir == "" {
		d, err := os.MkdirTemp("", "straitbench-")
		if err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		e.dir = d
		if !cfg.Keep {
			defer os.RemoveAll(d)
		}
	}
	e.ps = NewProcs(e.dir)
	defer e.ps.Stop()
	if err := e.setup(ctx); err != nil {
		return nil, err
	}
	defer e.echo.Close()
	var errs []error
	for _, ph := range []struct {
		name string
		run  func(context.Context) error
	}{
		{"throughput", e.throughput},
		{"latency", e.latency},
		{"ttfb", e.ttfb},
		{"propagation", e.propagation},
	} {
		if !cfg.phase(ph.name) {
			continue
		}
		start := time.Now()
		e.log.Info("phase", "name", ph.name)
		if err := ph.run(ctx); err != nil {
			e.log.Error("phase failed", "name", ph.name, "err", err)
			errs = append(errs, fmt.Errorf("%s: %w", ph.name, err))
		}
		e.log.Info("phase done", "name", ph.name, "took", time.Since(start).Round(time.Millisecond))
	}
	return e.metrics, errors.Join(errs...)
}

// setup builds the binaries, finds the tools and starts the apps, the peers
// and Strait's main deployment.
func (e *env) setup(ctx context.Context) error {
	if err := e.findBins(ctx); err != nil {
		return err
	}
	e.ps.SetEnv(e.bins.strait, e.cfg.StraitEnv)
	var err error
	if e.cert, err = NewCert(e.dir); err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	e.iperf = "127.0.0.1:" + strconv.Itoa(port)
	if _, err := e.ps.Start("iperf3-server", e.bins.iperf3, "-s", "-B", "127.0.0.1", "-p", strconv.Itoa(port)); err != nil {
		return err
	}
	if err := waitTCP(ctx, e.iperf, readyTimeout); err != nil {
		return err
	}
	if e.echo, err = StartEchoServer(e.log); err != nil {
		return err
	}
	routes := func() []*Route {
		return []*Route{{Name: "iperf", Target: e.iperf}, {Name: "http", Target: e.echo.Plain.String()}}
	}
	if e.stunnel, err = StartStunnel(ctx, e.ps, e.bins.stunnel, e.dir, e.cert, routes()); err != nil {
		return err
	}
	if e.haproxy, err = StartHAProxy(ctx, e.ps, e.bins.haproxy, e.dir, e.cert, routes()); err != nil {
		return err
	}
	if e.rawquic, err = StartRawQUIC(ctx, e.ps, e.bins.rawquic, &Route{Name: "iperf", Target: e.iperf}, e.cfg.RawQUICConns); err != nil {
		return err
	}
	if _, e.etcd, err = StartEtcd(ctx, e.ps, e.bins.etcd, e.dir); err != nil {
		return err
	}
	e.straitSvcs = map[string]*StraitService{
		"iperf": {Name: "iperf", Port: 5201, App: e.iperf, NoProxyHeader: true},
		"http":  {Name: "web", Port: 80, App: e.echo.Proxied.String()},
	}
	if e.strait, err = e.startStrait(ctx, "a", "/bench-a/", nil, e.straitSvcs["iperf"], e.straitSvcs["http"]); err != nil {
		return err
	}
	for _, p := range []*Pair{e.stunnel, e.haproxy} {
		if err := waitHTTP(ctx, p.Route("http").Entry, readyTimeout); err != nil {
			return err
		}
	}
	if err := waitHTTP(ctx, e.straitSvcs["http"].Entry, readyTimeout); err != nil {
		return err
	}
	return nil
}

func (e *env) startStrait(ctx context.Context, name, prefix string, via func(string) (string, error), svcs ...*StraitService) (*Strait, error) {
	cli, err := federation.Dial(federation.ClientConfig{Endpoints: []string{e.etcd}})
	if err != nil {
		return nil, fmt.Errorf("bench: etcd: %w", err)
	}
	defer cli.Close()
	return StartStrait(ctx, e.ps, cli, StraitConfig{
		Bin: e.bins.strait, Dir: filepath.Join(e.dir, "strait-"+name), Etcd: e.etcd, Prefix: prefix,
		Name: "strait-" + name, WestIngressVia: via, Services: svcs,
	})
}

func (e *env) findBins(ctx context.Context) error {
	var err error
	for _, b := range []struct {
		dst *string
		pkg string
	}{{&e.bins.strait, "./cmd/strait"}, {&e.bins.rawquic, "./e2e/bench/rawquic"}} {
		*b.dst = filepath.Join(e.dir, filepath.Base(b.pkg))
		start := time.Now()
		cmd := exec.CommandContext(ctx, "go", "build", "-o", *b.dst, b.pkg)
		cmd.Dir = e.cfg.Repo
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("bench: go build %s: %w: %s", b.pkg, err, out)
		}
		e.log.Info("built", "pkg", b.pkg, "took", time.Since(start).Round(time.Millisecond))
	}
	if e.bins.fortio, err = toolbin.Path(ctx, "fortio"); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	if e.bins.etcd, err = toolbin.Path(ctx, "etcd"); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	for _, b := range []struct {
		dst  *string
		name string
	}{{&e.bins.iperf3, "iperf3"}, {&e.bins.stunnel, "stunnel4"}, {&e.bins.haproxy, "haproxy"}} {
		if *b.dst, err = exec.LookPath(b.name); err != nil {
			return fmt.Errorf("bench: %s not found (the Debian packages iperf3, stunnel4 and haproxy are needed; .ci/run installs them): %w", b.name, err)
		}
	}
	return nil
}

// throughput runs iperf3 with 1 and 8 streams through every setup.
func (e *env) throughput(ctx context.Context) error {
	entries := []struct{ setup, addr string }{
		{SetupDirect, e.iperf},
		{SetupStunnel, e.stunnel.Route("iperf").Entry},
		{SetupHAProxy, e.haproxy.Route("iperf").Entry},
		{SetupRawQUIC, e.rawquic.Route("iperf").Entry},
		{SetupStrait, e.straitSvcs["iperf"].Entry},
	}
	// A short run through Strait first: it checks the path end to end.
	if err := retry(ctx, 10, time.Second, func() error {
		_, err := Iperf3(ctx, e.bins.iperf3, e.straitSvcs["iperf"].Entry, 1, time.Second)
		return err
	}); err != nil {
		return err
	}
	var errs []error
	for _, streams := range []int{1, 8} {
		m := Metric{Bench: fmt.Sprintf("throughput_%d_stream", streams), Unit: "Gbit/s", Values: map[string]float64{}}
		if streams > 1 {
			m.Bench += "s"
		}
		runs := map[string][]float64{}
		for run := range e.cfg.ThroughputRuns {
			for _, en := range entries {
				var stopPerf func() error
				if en.setup == SetupStrait && e.cfg.PerfDir != "" && run == 0 {
					var err error
					if stopPerf, err = e.startPerf(ctx, fmt.Sprintf("strait-%d", streams)); err != nil {
						errs = append(errs, err)
					}
				}
				v, err := Iperf3(ctx, e.bins.iperf3, en.addr, streams, e.cfg.ThroughputDuration)
				if stopPerf != nil {
					if perr := stopPerf(); perr != nil {
						errs = append(errs, perr)
					}
				}
				if err != nil {
					errs = append(errs, err)
					continue
				}
				e.log.Info("throughput", "setup", en.setup, "streams", streams, "run", run, "gbps", v)
				runs[en.setup] = append(runs[en.setup], v)
			}
		}
		for setup, vs := range runs {
			m.Values[setup] = median(vs)
		}
		e.add(m)
	}
	return errors.Join(errs...)
}

// startPerf records Strait's processes with perf until the returned
// function is called.
func (e *env) startPerf(ctx context.Context, name string) (func() error, error) {
	if err := os.MkdirAll(e.cfg.PerfDir, 0o755); err != nil {
		return nil, fmt.Errorf("bench: perf: %w", err)
	}
	var pids []string
	procs := []*Proc{e.strait.EastProxy, e.strait.EastGW, e.strait.WestGW}
	for _, p := range e.strait.WestProxies {
		procs = append(procs, p)
	}
	for _, p := range procs {
		pids = append(pids, strconv.Itoa(p.Pid()))
		e.log.Info("perf target", "pid", p.Pid(), "process", p.Name)
	}
	out := filepath.Join(e.cfg.PerfDir, name+".perf.data")
	p, err := e.ps.Start("perf-"+name, "perf", "record", "-F", "499", "-g", "-o", out, "-p", strings.Join(pids, ","))
	if err != nil {
		return nil, err
	}
	// Give perf a moment to attach before the load starts.
	time.Sleep(500 * time.Millisecond)
	return func() error {
		_ = syscall.Kill(p.Pid(), syscall.SIGINT)
		select {
		case <-p.done:
			return nil
		case <-time.After(30 * time.Second):
			return fmt.Errorf("bench: perf did not stop")
		case <-ctx.Done():
			return ctx.Err()
		}
	}, nil
}

// median returns the median of vs (the mean of the middle two for an even
// count); 0 for none.
func median(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func retry(ctx context.Context, n int, wait time.Duration, f func() error) error {
	var err error
	for i := range n {
		if err = f(); err == nil {
			return nil
		}
		if i < n-1 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(wait):
			}
		}
	}
	return err
}

// usageSet samples the processes of one setup.
type usageSet map[string]*Proc

func (u usageSet) read() (map[string]Usage, error) {
	out := map[string]Usage{}
	for role, p := range u {
		v, err := p.Usage()
		if err != nil {
			return nil, err
		}
		out[role] = v
	}
	return out, nil
}

// Roles of the processes whose CPU and memory are reported.
const (
	roleClient = "proxy_client"
	roleServer = "proxy_server"
	roleGWEast = "gateway_east"
	roleGWWest = "gateway_west"
)

// latency runs fortio at a fixed rate through every setup, reading the CPU
// time and RSS of the setup's processes around each run.
func (e *env) latency(ctx context.Context) error {
	type target struct {
		setup string
		addr  string
		procs usageSet
	}
	targets := []target{
		{SetupDirect, e.echo.Plain.String(), nil},
		{SetupStunnel, e.stunnel.Route("http").Entry, usageSet{roleClient: e.stunnel.Client, roleServer: e.stunnel.Server}},
		{SetupHAProxy, e.haproxy.Route("http").Entry, usageSet{roleClient: e.haproxy.Client, roleServer: e.haproxy.Server}},
		{SetupStrait, e.straitSvcs["http"].Entry, usageSet{roleClient: e.strait.EastProxy, roleServer: e.strait.WestProxies["web"],
			roleGWEast: e.strait.EastGW, roleGWWest: e.strait.WestGW}},
	}
	pct := map[string]*Metric{}
	for _, p := range []string{"p50", "p90", "p99"} {
		pct[p] = &Metric{Bench: "latency_" + p + "_1k_1000rps", Unit: "ms", Values: map[string]float64{}}
	}
	cpu := map[string]*Metric{}
	rss := map[string]*Metric{}
	for _, r := range []string{roleClient, roleServer, roleGWEast, roleGWWest} {
		cpu[r] = &Metric{Bench: "cpu_per_1k_req_" + r, Unit: "cpu_s", Values: map[string]float64{}}
		rss[r] = &Metric{Bench: "rss_" + r, Unit: "MB", Values: map[string]float64{}}
	}
	total := &Metric{Bench: "cpu_per_1k_req_total", Unit: "cpu_s", Values: map[string]float64{}}
	var errs []error
	// Warm up every setup: connections, pools, caches.
	ok := map[string]bool{}
	for _, t := range targets {
		url := "http://" + t.addr + "/echo"
		if _, err := Fortio(ctx, e.bins.fortio, e.dir, t.setup+"-warmup", url, e.cfg.QPS, e.cfg.Conns, e.cfg.Payload, 2*time.Second); err != nil {
			errs = append(errs, err)
			continue
		}
		ok[t.setup] = true
	}
	// The setups take turns, LatencyRuns times; each percentile is the
	// median over the runs, CPU is summed over them.
	type acc struct {
		p50, p90, p99 []float64
		cpu           map[string]time.Duration
		requests      int64
		last          map[string]Usage
	}
	accs := map[string]*acc{}
	runDur := e.cfg.LatencyDuration / time.Duration(e.cfg.LatencyRuns)
	for run := range e.cfg.LatencyRuns {
		for _, t := range targets {
			if !ok[t.setup] {
				continue
			}
			a := accs[t.setup]
			if a == nil {
				a = &acc{cpu: map[string]time.Duration{}}
				accs[t.setup] = a
			}
			before, err := t.procs.read()
			if err != nil {
				errs = append(errs, err)
				continue
			}
			l, err := Fortio(ctx, e.bins.fortio, e.dir, fmt.Sprintf("%s-%d", t.setup, run), "http://"+t.addr+"/echo",
				e.cfg.QPS, e.cfg.Conns, e.cfg.Payload, runDur)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			after, err := t.procs.read()
			if err != nil {
				errs = append(errs, err)
				continue
			}
			e.log.Info("latency", "setup", t.setup, "run", run, "p50", l.P50, "p90", l.P90, "p99", l.P99, "qps", l.QPS, "requests", l.Requests)
			a.p50, a.p90, a.p99 = append(a.p50, ms(l.P50)), append(a.p90, ms(l.P90)), append(a.p99, ms(l.P99))
			a.requests += l.Requests
			for role, u := range after {
				a.cpu[role] += u.CPU - before[role].CPU
			}
			a.last = after
		}
	}
	for _, t := range targets {
		a := accs[t.setup]
		if a == nil || a.requests == 0 {
			continue
		}
		pct["p50"].Values[t.setup] = median(a.p50)
		pct["p90"].Values[t.setup] = median(a.p90)
		pct["p99"].Values[t.setup] = median(a.p99)
		var sum float64
		for role, u := range a.last {
			per1k := a.cpu[role].Seconds() / float64(a.requests) * 1000
			cpu[role].Values[t.setup] = per1k
			rss[role].Values[t.setup] = float64(u.RSS) / (1 << 20)
			sum += per1k
			e.log.Info("usage", "setup", t.setup, "role", role, "cpu_s_per_1k", per1k, "requests", a.requests,
				"rss_mb", float64(u.RSS)/(1<<20), "rss_anon_mb", float64(u.Anon)/(1<<20), "hwm_mb", float64(u.HWM)/(1<<20))
		}
		// The gateways' rows compare with the peer's process on the same
		// side: each relays every connection once, as a gateway does.
		if t.setup != SetupStrait {
			for gw, side := range map[string]string{roleGWEast: roleClient, roleGWWest: roleServer} {
				if v, ok := cpu[side].Values[t.setup]; ok {
					cpu[gw].Values[t.setup] = v
					rss[gw].Values[t.setup] = rss[side].Values[t.setup]
				}
			}
		}
		if len(a.last) > 0 {
			total.Values[t.setup] = sum
		}
	}
	for _, p := range []string{"p50", "p90", "p99"} {
		e.add(*pct[p])
	}
	added := Metric{Bench: "added_latency_p99", Unit: "ms", Values: map[string]float64{}}
	if d, ok := pct["p99"].Values[SetupDirect]; ok {
		for s, v := range pct["p99"].Values {
			if s != SetupDirect {
				added.Values[s] = v - d
			}
		}
	}
	e.add(added)
	for _, r := range []string{roleClient, roleServer, roleGWEast, roleGWWest} {
		e.add(*cpu[r])
	}
	e.add(*total)
	for _, r := range []string{roleClient, roleServer, roleGWEast, roleGWWest} {
		e.add(*rss[r])
	}
	return errors.Join(errs...)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// ttfb measures new-connection time to first byte through a stunnel4 pair
// and through a second Strait deployment, each with a WAN link in front of
// its remote side, at no added delay and then at WANRTT.
func (e *env) ttfb(ctx context.Context) error {
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var links []*wan.Link
	done := make(chan struct{})
	defer func() {
		cancel()
		for range links {
			<-done
		}
	}()
	startLink := func(backend string, disableTCP, disableUDP bool) (*wan.Link, error) {
		addr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		l, err := wan.NewLink(wan.LinkConfig{Listen: addr, Backends: []string{backend},
			DisableTCP: disableTCP, DisableUDP: disableUDP, Logger: e.log.With("component", "wan")})
		if err != nil {
			return nil, fmt.Errorf("bench: wan: %w", err)
		}
		links = append(links, l)
		go func() { _ = l.Run(lctx); done <- struct{}{} }()
		return l, nil
	}
	// stunnel4: client stunnel -> WAN (TCP) -> server stunnel -> app.
	stRoute := &Route{Name: "ttfb", Target: e.echo.Plain.String()}
	if err := assignPorts([]*Route{stRoute}); err != nil {
		return err
	}
	stLink, err := startLink(stRoute.Server, false, true)
	if err != nil {
		return err
	}
	stRoute.Via = stLink.Addr().String()
	stPair, err := StartStunnel(ctx, e.ps, e.bins.stunnel, filepath.Join(e.dir, "ttfb"), e.cert, []*Route{stRoute})
	if err != nil {
		return err
	}
	// Strait: client proxy -> gateway -> WAN (UDP) -> gateway -> proxy -> app.
	var qLink *wan.Link
	svc := &StraitService{Name: "web", Port: 80, App: e.echo.Proxied.String()}
	if _, err := e.startStrait(ctx, "b", "/bench-b/", func(ingress string) (string, error) {
		l, err := startLink(ingress, true, false)
		if err != nil {
			return "", err
		}
		qLink = l
		return l.Addr().String(), nil
	}, svc); err != nil {
		return err
	}
	for _, addr := range []string{stPair.Route("ttfb").Entry, svc.Entry} {
		if err := waitHTTP(ctx, addr, readyTimeout); err != nil {
			return err
		}
	}
	var errs []error
	for _, rtt := range []time.Duration{0, e.cfg.WANRTT} {
		for _, l := range []*wan.Link{stLink, qLink} {
			if err := l.SetDelay(rtt / 2); err != nil {
				return fmt.Errorf("bench: wan: %w", err)
			}
		}
		m := Metric{Bench: fmt.Sprintf("ttfb_%dms_rtt_p50", rtt.Milliseconds()), Unit: "ms", Values: map[string]float64{}}
		m90 := Metric{Bench: fmt.Sprintf("ttfb_%dms_rtt_p90", rtt.Milliseconds()), Unit: "ms", Values: map[string]float64{}}
		for _, t := range []struct{ setup, addr string }{{SetupStunnel, stPair.Route("ttfb").Entry}, {SetupStrait, svc.Entry}} {
			// Warm up: session caches, the pooled QUIC connection.
			if _, err := TTFB(ctx, t.addr, 3, 10*time.Second); err != nil {
				errs = append(errs, err)
				continue
			}
			s, err := TTFB(ctx, t.addr, e.cfg.TTFBConns, 10*time.Second)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			e.log.Info("ttfb", "setup", t.setup, "rtt", rtt, "p50", percentile(s, 0.5), "p90", percentile(s, 0.9))
			m.Values[t.setup] = ms(percentile(s, 0.5))
			m90.Values[t.setup] = ms(percentile(s, 0.9))
		}
		e.add(m)
		e.add(m90)
	}
	return errors.Join(errs...)
}

// propagation measures export propagation to 10 caches and raw etcd watch
// latency on the same etcd.
func (e *env) propagation(ctx context.Context) error {
	p50 := Metric{Bench: "export_propagation_p50", Unit: "ms", Values: map[string]float64{}}
	p99 := Metric{Bench: "export_propagation_p99", Unit: "ms", Values: map[string]float64{}}
	defer func() { e.add(p50); e.add(p99) }()
	raw, err := EtcdWatch(ctx, e.etcd, "/bench-raw/key", e.cfg.Watchers, e.cfg.Writes)
	if err != nil {
		return err
	}
	e.log.Info("etcd watch", "p50", raw.P50, "p99", raw.P99, "samples", raw.Samples)
	p50.Values[SetupEtcdWatch], p99.Values[SetupEtcdWatch] = ms(raw.P50), ms(raw.P99)
	exp, err := ExportPropagation(ctx, e.etcd, "/bench-prop/", e.cfg.Watchers, e.cfg.Writes)
	if err != nil {
		return err
	}
	e.log.Info("export propagation", "p50", exp.P50, "p99", exp.P99, "samples", exp.Samples)
	p50.Values[SetupStrait], p99.Values[SetupStrait] = ms(exp.P50), ms(exp.P99)
	return nil
}

// Report writes the table, the goals and the JSON lines.
func Report(w io.Writer, ms []Metric) error {
	if err := WriteTable(w, ms); err != nil {
		return err
	}
	fmt.Fprintln(w)
	WriteGoals(w, Goals(ms))
	fmt.Fprintln(w)
	return WriteJSON(w, ms)
}
