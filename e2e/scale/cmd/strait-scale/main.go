// Command strait-scale simulates a federation of many clusters against a
// real 3-member etcd and real federation caches, and prints what it costs
// (see package scale). `make scale` runs it with its defaults: 1,000
// clusters of 100 exports with 3 endpoints each, 10 caches, 1 % churn.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
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
	flag.Float64Var(&cfg.Churn, "churn", 0.01, "share of endpoints changing readiness per second")
	flag.DurationVar(&cfg.Duration, "duration", 0, "churn phase (default 60s)")
	flag.Int64Var(&cfg.PageSize, "page-size", 0, "keys per page of the caches' lists (default: the cache's, 1000)")
	flag.DurationVar(&cfg.LeaseTTL, "lease-ttl", 0, "lease TTL of every registrar (default 10s)")
	dir := flag.String("dir", "", "directory for etcd's data and logs (default: a new temporary one, removed after)")
	flag.Parse()
	if flag.NArg() > 0 {
		log.Fatalf("strait-scale: unexpected arguments %q", flag.Args())
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
