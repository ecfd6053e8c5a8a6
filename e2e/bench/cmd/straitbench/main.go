package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/strait-mesh/strait/e2e/bench"
)

func main() {
	os.Exit(run())
}

func run() int {
	var (
		cfg      bench.Config
		only     string
		env      string
		jsonPath string
		mdPath   string
		quiet    bool
	)
	flag.StringVar(&cfg.Repo, "repo", ".", "root of the Strait repository (binaries are built from it)")
	flag.StringVar(&cfg.WorkDir, "workdir", "", "directory for configs, logs and binaries (default: a temporary one)")
	flag.BoolVar(&cfg.Keep, "keep", false, "keep the temporary directory")
	flag.DurationVar(&cfg.ThroughputDuration, "throughput-duration", bench.DefaultThroughputDuration, "measured length of one iperf3 run")
	flag.IntVar(&cfg.ThroughputRuns, "throughput-runs", bench.DefaultThroughputRuns, "iperf3 runs per setup (the median is reported)")
	flag.DurationVar(&cfg.LatencyDuration, "latency-duration", bench.DefaultLatencyDuration, "fortio time per setup, split into -latency-runs runs")
	flag.IntVar(&cfg.LatencyRuns, "latency-runs", bench.DefaultLatencyRuns, "fortio runs per setup (each percentile is the median over them)")
	flag.IntVar(&cfg.QPS, "qps", bench.DefaultQPS, "fortio request rate")
	flag.IntVar(&cfg.TTFBConns, "ttfb-conns", bench.DefaultTTFBConns, "new connections per time-to-first-byte sample set")
	flag.DurationVar(&cfg.WANRTT, "wan-rtt", bench.DefaultWANRTT, "round trip the WAN emulator adds in the second TTFB set")
	flag.IntVar(&cfg.Writes, "writes", bench.DefaultWrites, "export writes in the propagation runs")
	flag.DurationVar(&cfg.Timeout, "timeout", bench.DefaultTimeout, "bound on the whole run")
	flag.IntVar(&cfg.RawQUICConns, "rawquic-conns", 1, "QUIC connections the rawquic relay spreads streams over (1 is what Strait's gateway uses)")
	flag.StringVar(&cfg.PerfDir, "perf", "", "record perf profiles of Strait's processes during its iperf3 runs into this directory")
	flag.StringVar(&cfg.ProfileDir, "profile", "", "take Go CPU profiles of Strait's four processes during one more 1000 rps fortio run (after the measured ones) into this directory")
	flag.DurationVar(&cfg.ProfileDuration, "profile-duration", bench.DefaultProfileDuration, "length of the profiled fortio run")
	flag.StringVar(&env, "strait-env", "", "comma-separated KEY=value environment of Strait's processes, e.g. GOMAXPROCS=1 (an experiment)")
	flag.StringVar(&only, "only", "", "comma-separated phases to run: throughput,latency,ttfb,propagation (default: all)")
	flag.StringVar(&jsonPath, "json", "", "also write the JSON lines to this file")
	flag.StringVar(&mdPath, "markdown", "", "also write the table as Markdown to this file")
	flag.BoolVar(&quiet, "quiet", false, "log warnings and errors only")
	flag.BoolVar(&cfg.Smoke, "smoke", false, "shortest run that produces every row (one 1s run per setup and phase; overrides the duration and count flags): checks the harness, measures nothing")
	flag.Parse()
	if only != "" {
		cfg.Only = strings.Split(only, ",")
	}
	if env != "" {
		cfg.StraitEnv = strings.Split(env, ",")
	}
	level := slog.LevelInfo
	if quiet {
		level = slog.LevelWarn
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	load, _ := os.ReadFile("/proc/loadavg")
	sampler := &loadSampler{}
	sctx, stopSampler := context.WithCancel(ctx)
	sampled := make(chan struct{})
	go func() { sampler.run(sctx); close(sampled) }()
	res, runErr := bench.Run(ctx, cfg)
	stopSampler()
	<-sampled
	loadEnd, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("straitbench: %s, started %s; load average at start %s, at end %s\n%s\n\n", time.Since(start).Round(time.Second),
		start.UTC().Format("2006-01-02 15:04:05 UTC"),
		strings.Join(strings.Fields(string(load))[:3], " "), strings.Join(strings.Fields(string(loadEnd))[:3], " "), sampler)
	if err := bench.Report(os.Stdout, res); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if jsonPath != "" {
		if err := writeFile(jsonPath, func(f *os.File) error { return bench.WriteJSON(f, res.Metrics) }); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	if mdPath != "" {
		if err := writeFile(mdPath, func(f *os.File) error { bench.WriteMarkdown(f, res.Metrics); return nil }); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	if runErr != nil {
		fmt.Fprintln(os.Stderr, "straitbench:", runErr)
		return 1
	}
	return 0
}

func writeFile(path string, write func(*os.File) error) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("straitbench: %w", err)
	}
	if err := write(f); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}
