// Command strait-proxy is Strait's per-workload proxy as a binary of its
// own: the `strait proxy` command (same config file, flags and `init` and
// `cleanup` subcommands) without the embedded etcd server, the Kubernetes
// client and the other commands, so that the sidecar's binary and resident
// memory stay small. Run `strait-proxy --help`.
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
	cmd := proxycmd.New("strait-proxy")
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	if err := cmd.ExecuteContext(ctx); err != nil {
		if !errors.Is(err, context.Canceled) {
			fmt.Fprintln(os.Stderr, "strait-proxy:", err)
		}
		stop()
		os.Exit(1)
	}
}
