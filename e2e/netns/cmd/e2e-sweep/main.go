// Command e2e-sweep removes network namespaces that end-to-end test runs left
// behind: by default those of topologies whose owning test process is gone
// (netns.SweepStale), or with -prefix every namespace of one topology
// (netns.Sweep). It needs root.
//
//	go run ./e2e/netns/cmd/e2e-sweep
//	go run ./e2e/netns/cmd/e2e-sweep -prefix st-1a2b3c
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/strait-mesh/strait/e2e/netns"
)

func main() {
	prefix := flag.String("prefix", "", "sweep this topology prefix even if its owner runs")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if *prefix != "" {
		if err := netns.Sweep(ctx, *prefix); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println("swept", *prefix)
		return
	}
	swept, err := netns.SweepStale(ctx)
	for _, p := range swept {
		fmt.Println("swept", p)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
