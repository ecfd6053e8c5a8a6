// Command strait-proxy is Strait's per-workload proxy as a binary of its
// own: the `strait proxy` command (same config file and flags) without the
// embedded etcd server, the Kubernetes client, cobra and the other
// commands, so that the sidecar's binary and resident memory stay small.
// Its `init` and `cleanup` subcommands execute strait-init, the init
// container's binary, from the same directory: the capture rules' nftables
// code is not in this one. Build it as `make build` does, with the flags
// of build.flags: the grpcnotrace tag (grpc then leaves out
// golang.org/x/net/trace, whose html/template keeps every exported method
// of the binary alive), the straitetcdlite tag (federation's etcd client is
// internal/etcdlite instead of clientv3, zap and etcd's generated
// messages: 1.35 MB less code to map), and no inlining outside the data path (0.9 MB less). Run
// `strait-proxy --help`.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/strait-mesh/strait/internal/proxycmd"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := proxycmd.Main(ctx, "strait-proxy", os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, context.Canceled) {
			fmt.Fprintln(os.Stderr, "strait-proxy:", err)
		}
		stop()
		os.Exit(1)
	}
}
