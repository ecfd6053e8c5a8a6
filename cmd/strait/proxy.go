package main

import (
	"github.com/spf13/cobra"

	"github.com/strait-mesh/strait/internal/proxycmd"
)

// newProxyCmd is `strait proxy`: the command of the strait-proxy binary
// (internal/proxycmd), which parses its own flags and subcommands (init,
// cleanup) so that the sidecar binary links no cobra.
func newProxyCmd() *cobra.Command {
	return &cobra.Command{
		Use:                "proxy --config proxy.yaml",
		Short:              proxycmd.Short,
		Long:               "Run the per-workload proxy: see 'strait proxy --help'.",
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return proxycmd.Main(cmd.Context(), "strait proxy", args, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
}
