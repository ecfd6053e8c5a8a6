// Command strait is Strait's one binary: a multi-cluster federated mesh
// gateway. Run `strait --help` for the subcommands.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRootCmd().ExecuteContext(ctx); err != nil {
		if !errors.Is(err, context.Canceled) {
			fmt.Fprintln(os.Stderr, "strait:", err)
		}
		stop()
		os.Exit(1)
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "strait",
		Short: "Strait: a multi-cluster federated mesh gateway",
		Long: `Strait connects services across clusters. East-west gateways exchange
service exports through etcd and tunnel mTLS traffic between clusters over
QUIC; a proxy beside each workload routes local traffic itself and hands
remote traffic to its cluster's gateway.

Start with 'strait dev': a whole two-cluster federation in one process.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(
		newDevCmd(),
		newGatewayCmd(),
		newProxyCmd(),
		newExportCmd(),
		newUnexportCmd(),
		newStatusCmd(),
		newCheckCmd(),
		newGatewaysCmd(),
		newConfigCmd(),
		newDemoCmd(),
		newSPIRESyncCmd(),
		newInjectCmd(),
	)
	return root
}
