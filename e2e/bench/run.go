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
	"github.com/strait-mesh/strait/federation"
	"github.com/strait-mesh/strait/internal/proxycmd/buildflags"
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
	DefaultProfileDuration    = 10 * time.Second
	// DefaultTimeout bounds the whole run.
	DefaultTimeout = 14 * time.Minute
	// MaxRateError is how far fortio's achieved rate may be from the asked
	// one before the latency rows of the setup are marked failed.
	MaxRateError = 0.02
)

// Config configures Run. Zero values mean the documented defaults.
type Config struct {
	// Repo is the root of the Strait repository, where the strait,
	// strait-proxy and rawquic binaries are built from. Zero means the
	// working directory.
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
	// Only, when non-empty, limits the run to these phases (the names of
	// the phases table: throughput, latency, ttfb, propagation, ...).
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
	// ProfileDir, when set, takes Go CPU profiles of Strait's four
	// processes (their admin servers' /debug/pprof/profile) during one more
	// fortio run through Strait after the measured latency runs, so that
	// the profile's overhead touches no figure, into
	// ProfileDir/<process>.pprof (go tool pprof -top FILE).
	ProfileDir string
	// ProfileDuration is the length of that run. Zero means 10s.
	ProfileDuration time.Duration
	// Timeout bounds the run. Zero means 14m.
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
		c.ProfileDuration = time.Second
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
	def(&c.ProfileDuration, DefaultProfileDuration)
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
	return len(c.Only) == 0 || slices.Contains(c.Only, name)
}

// bins are the programs the harness runs.
type bins struct {
	strait, straitProxy, rawquic, fortio, etcd, iperf3, stunnel, haproxy string
}

// peerSetup is one column of the table other than Strait's: where the load
// generators connect for each route, and the processes whose CPU and memory
// are read under the latency load.
type peerSetup struct {
	name  string
	entry map[string]string // route name ("iperf", "http") → address
	procs usageSet
}

// tlsSource is a peer setup whose handshakes are logged (see ReadTLSLogs).
type tlsSource struct {
	// deployment names the instance: "main" (throughput and latency) or
	// "ttfb".
	setup, resumption, deployment string
	pair                          *Pair
	haproxy                       bool
}

// Results is what a run measured.
type Results struct {
	Metrics []Metric
	// TLS lists the parameters each setup's TLS hops negotiated.
	TLS []TLSInfo
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

	// peers are the columns other than Strait's, in column order.
	peers      []*peerSetup
	strait     *Strait
	straitSvcs map[string]*StraitService
	// straits are every Strait deployment started (their TLS counters are
	// read at the end).
	straits    []*Strait
	tlsSources []tlsSource

	res Results
}

func (e *env) add(m Metric) { e.res.Metrics = append(e.res.Metrics, m) }

// peer returns the setup named name, or nil.
func (e *env) peer(name string) *peerSetup {
	for _, p := range e.peers {
		if p.name == name {
			return p
		}
	}
	return nil
}

// phases are the harness' phases, run in this order; Config.Only names
// them. A new set of rows is one more line here and a method of env in a
// file of its own.
var phases = []struct {
	name string
	run  func(*env, context.Context) error
}{
	{"throughput", (*env).throughput},
	{"latency", (*env).latency},
	{"ttfb", (*env).ttfb},
	{PhaseSessions, (*env).sessions},
	{PhaseSessionsPath, (*env).sessionsPath},
	{"propagation", (*env).propagation},
	{PhaseGOMAXPROCS, (*env).gomaxprocs},
}

// Run runs every phase and returns what it measured. A phase that fails is
// reported in the returned error and the others still run; every process
// started is stopped before Run returns.
func Run(ctx context.Context, cfg Config) (Results, error) {
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	e := &env{cfg: cfg, log: cfg.Logger, dir: cfg.WorkDir}
	if e.dir == "" {
		d, err := os.MkdirTemp("", "straitbench-")
		if err != nil {
			return e.res, fmt.Errorf("bench: %w", err)
		}
		e.dir = d
		if !cfg.Keep {
			defer os.RemoveAll(d)
		}
	}
	e.ps = NewProcs(e.dir)
	defer e.ps.Stop()
	if err := e.setup(ctx); err != nil {
		return e.res, err
	}
	defer e.echo.Close()
	var errs []error
	for _, ph := range phases {
		if !cfg.phase(ph.name) {
			continue
		}
		start := time.Now()
		e.log.Info("phase", "name", ph.name)
		if err := ph.run(e, ctx); err != nil {
			e.log.Error("phase failed", "name", ph.name, "err", err)
			errs = append(errs, fmt.Errorf("%s: %w", ph.name, err))
		}
		e.log.Info("phase done", "name", ph.name, "took", time.Since(start).Round(time.Millisecond))
	}
	if err := e.readTLS(ctx); err != nil {
		errs = append(errs, fmt.Errorf("tls parameters: %w", err))
	}
	return e.res, errors.Join(errs...)
}

// setup builds the binaries, finds the tools and starts the apps, the peers
// and Strait's main deployment.
func (e *env) setup(ctx context.Context) error {
	if err := e.findBins(ctx); err != nil {
		return err
	}
	e.ps.SetEnv(e.bins.strait, e.cfg.StraitEnv)
	e.ps.SetEnv(e.bins.straitProxy, e.cfg.StraitEnv)
	var err error
	if e.cert, err = NewCert(e.dir, "iperf", "http", "ttfb"); err != nil {
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
	entries := func(p *Pair) map[string]string {
		m := map[string]string{}
		for _, r := range p.Routes {
			m[r.Name] = r.Entry
		}
		return m
	}
	e.peers = append(e.peers, &peerSetup{name: SetupDirect, entry: map[string]string{"iperf": e.iperf, "http": e.echo.Plain.String()}})
	var ready []string
	for _, pp := range []struct {
		setup   string
		start   func(context.Context, *Procs, string, string, *Cert, []*Route, PeerOptions) (*Pair, error)
		bin     string
		haproxy bool
	}{
		{SetupStunnel, StartStunnel, e.bins.stunnel, false},
		{SetupHAProxy, StartHAProxy, e.bins.haproxy, true},
		{SetupHAProxySNI, StartHAProxySNI, e.bins.haproxy, true},
	} {
		p, err := pp.start(ctx, e.ps, pp.bin, e.dir, e.cert, routes(), PeerOptions{})
		if err != nil {
			return err
		}
		e.peers = append(e.peers, &peerSetup{name: pp.setup, entry: entries(p), procs: p.Procs()})
		e.tlsSources = append(e.tlsSources, tlsSource{setup: pp.setup, resumption: "off", deployment: "main", pair: p, haproxy: pp.haproxy})
		ready = append(ready, p.Route("http").Entry)
	}
	for _, rq := range []struct {
		setup string
		hops4 bool
	}{{SetupRawQUIC, false}, {SetupRawQUIC4, true}} {
		ps := &peerSetup{name: rq.setup, entry: map[string]string{}}
		for _, r := range routes() {
			p, err := StartRawQUIC(ctx, e.ps, e.bins.rawquic, r, e.cfg.RawQUICConns, rq.hops4, rq.setup+"-"+r.Name)
			if err != nil {
				return err
			}
			ps.entry[r.Name] = r.Entry
			if r.Name == "http" {
				ps.procs = p.Procs()
				ready = append(ready, r.Entry)
			}
		}
		e.peers = append(e.peers, ps)
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
	for _, addr := range append(ready, e.straitSvcs["http"].Entry) {
		if err := waitHTTP(ctx, addr, readyTimeout); err != nil {
			return err
		}
	}
	return nil
}

func (e *env) startStrait(ctx context.Context, name, prefix string, via func(string) (string, error), svcs ...*StraitService) (*Strait, error) {
	cli, err := federation.Dial(federation.ClientConfig{Endpoints: []string{e.etcd}})
	if err != nil {
		return nil, fmt.Errorf("bench: etcd: %w", err)
	}
	defer cli.Close()
	s, err := StartStrait(ctx, e.ps, cli, StraitConfig{
		Bin: e.bins.strait, ProxyBin: e.bins.straitProxy, Dir: filepath.Join(e.dir, "strait-"+name), Etcd: e.etcd, Prefix: prefix,
		Name: "strait-" + name, WestIngressVia: via, Services: svcs,
	})
	if err == nil {
		e.straits = append(e.straits, s)
	}
	return s, err
}

func (e *env) findBins(ctx context.Context) error {
	// strait-proxy as make build and the image build it.
	proxyFlags, err := buildflags.Read(filepath.Join(e.cfg.Repo, "cmd", "strait-proxy", "build.flags"))
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	for _, b := range []struct {
		dst   *string
		pkg   string
		flags []string
	}{
		{&e.bins.strait, "./cmd/strait", nil},
		{&e.bins.straitProxy, "./cmd/strait-proxy", proxyFlags},
		{&e.bins.rawquic, "./e2e/bench/rawquic", nil},
	} {
		*b.dst = filepath.Join(e.dir, filepath.Base(b.pkg))
		start := time.Now()
		args := append(append([]string{"build"}, b.flags...), "-o", *b.dst, b.pkg)
		cmd := exec.CommandContext(ctx, "go", args...)
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
	if _, err := exec.LookPath("openssl"); err != nil {
		return fmt.Errorf("bench: openssl not found (it probes the peers' negotiated key exchange): %w", err)
	}
	return nil
}

// throughput runs iperf3 with 1 and 8 streams through every setup.
func (e *env) throughput(ctx context.Context) error {
	type entry struct{ setup, addr string }
	var entries []entry
	for _, p := range e.peers {
		if a, ok := p.entry["iperf"]; ok {
			entries = append(entries, entry{p.name, a})
		}
	}
	entries = append(entries, entry{SetupStrait, e.straitSvcs["iperf"].Entry})
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

// Report writes the table, the notes and marks of its rows, the TLS
// parameters of every setup, the goals and the JSON lines.
func Report(w io.Writer, r Results) error {
	if err := WriteTable(w, r.Metrics); err != nil {
		return err
	}
	WriteNotes(w, r.Metrics)
	fmt.Fprintln(w)
	if len(r.TLS) > 0 {
		WriteTLS(w, r.TLS)
		fmt.Fprintln(w)
	}
	WriteGoals(w, Goals(r.Metrics))
	fmt.Fprintln(w)
	return WriteJSON(w, r.Metrics)
}
