// Command strait-init is the init container of an injected pod: it
// installs the nftables rules that capture the pod's outbound TCP and DNS
// (over netlink, CAP_NET_ADMIN only) and hands the built-in CA's directory
// to the proxy's user; `strait-init cleanup` removes the rules. It is a
// binary of its own so that the sidecar, strait-proxy, which runs for the
// pod's whole life, carries no nftables or netlink code;
// `strait-proxy init|cleanup` executes it (it must be in the same
// directory, as in Strait's image). Run `strait-init --help`.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/strait-mesh/strait/internal/proxycmd/initcmd"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := initcmd.Main(ctx, "strait-init", os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, context.Canceled) {
			fmt.Fprintln(os.Stderr, "strait-init:", err)
		}
		stop()
		os.Exit(1)
	}
}
