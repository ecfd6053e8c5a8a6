// Command strait-scale simulates a federation of many clusters against a
// real 3-member etcd, real federation caches and two real clusters
// (gateway and proxy each), and prints what it costs (see package scale).
// `make scale` runs it with its defaults: 1,000 clusters of 100 exports
// with 3 endpoints each, 10 caches, the keyspace listed with pages of
// 1,000 and 10,000 keys, then churn phases of 0.1, 0.3 and 1 % of the
// endpoints per second, 60 s each.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/strait-mesh/strait/e2e/scale"
	"github.com/strait-mesh/strait/e2e/toolbin"
)

func main() {
	var cfg scale.Config
	flag.IntVar(&cfg.Clusters, "clusters", 1000, "simulated clusters")
	flag.IntVar(&cfg.ExportsPerCluster, "exports", 100, "exports per cluster")
	flag.IntVar(&cfg.EndpointsPerExport, "endpoints", 3, "endpoints per export")
	flag.IntVar(&cfg.Caches, "caches", 10, "federation caches watching (1-64)")
	flag.IntVar(&cfg.Clients, "clients", 0, "etcd clients the simulated clusters' registrars share (default: one per cluster)")
	churn := flag.String("churn", "0.001,0.003,0.01", "shares of endpoints changing readiness per second, comma-separated: one churn phase each, in order")
	flag.DurationVar(&cfg.Duration, "duration", 0, "each churn phase (default 60s)")
	flag.Int64Var(&cfg.PageSize, "page-size", 0, "keys per page of the caches' lists (default: the cache's)")
	pages := flag.String("list-pages", "1000,10000", "page sizes to list the whole keyspace with, one client alone, comma-separated (e.g. 1000,10000)")
	flag.BoolVar(&cfg.SkipReal, "skip-real", false, "leave out the real gateways and proxies")
	flag.StringVar(&cfg.HeapProfile, "heap-profile", "", "write a heap profile (pprof) here once the caches and real clusters are ready")
	flag.DurationVar(&cfg.LeaseTTL, "lease-ttl", 0, "lease TTL of every registrar (default 10s)")
	flag.DurationVar(&cfg.Heartbeat, "heartbeat", 0, "rewrite gateway records this often and withdraw gateways silent for 3 heartbeats (default: no heartbeat, liveness on the leases)")
	flag.DurationVar(&cfg.EtcdHeartbeat, "etcd-heartbeat", 0, "etcd members' --heartbeat-interval (default 500ms)")
	flag.DurationVar(&cfg.EtcdElectionTimeout, "etcd-election-timeout", 0, "etcd members' --election-timeout (default 5s)")
	dir := flag.String("dir", "", "directory for etcd's data and logs (default: a new temporary one, removed after)")
	flag.Parse()
	if flag.NArg() > 0 {
		log.Fatalf("strait-scale: unexpected arguments %q", flag.Args())
	}
	var err error
	if cfg.Churn, err = parseList(*churn, func(s string) (float64, error) { return strconv.ParseFloat(s, 64) }); err != nil {
		log.Fatalf("strait-scale: -churn: %v", err)
	}
	if cfg.ListPageSizes, err = parseList(*pages, func(s string) (int64, error) { return strconv.ParseInt(s, 10, 64) }); err != nil {
		log.Fatalf("strait-scale: -list-pages: %v", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	bin, err := toolbin.Path(ctx, "etcd")
	if err != nil {
		log.Fatalf("strait-scale: %v", err)
	}
	cfg.EtcdBinary = bin
	cfg.Dir = *dir
	if cfg.Dir == "" {
		d, err := os.MkdirTemp("", "strait-scale-")
		if err != nil {
			log.Fatalf("strait-scale: %v", err)
		}
		cfg.Dir = d
	}
	cfg.Logf = log.Printf
	if err := run(ctx, cfg, *dir == ""); err != nil {
		log.Fatalf("strait-scale: %v", err)
	}
}

// parseList parses a comma-separated list; "" is none.
func parseList[T any](s string, parse func(string) (T, error)) ([]T, error) {
	if s == "" {
		return nil, nil
	}
	var out []T
	for _, f := range strings.Split(s, ",") {
		v, err := parse(strings.TrimSpace(f))
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// run runs the harness and prints its table, removing a temporary
// directory it made whatever happens.
func run(ctx context.Context, cfg scale.Config, temporary bool) error {
	if temporary {
		defer func() { _ = os.RemoveAll(cfg.Dir) }()
	}
	rep, err := scale.Run(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Print(rep.Table())
	return nil
}
