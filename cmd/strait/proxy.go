package main

import (
	"github.com/spf13/cobra"

	"github.com/strait-mesh/strait/internal/proxycmd"
	"github.com/strait-mesh/strait/internal/proxycmd/initcmd"
)

// newProxyCmd is `strait proxy`: the command of the strait-proxy binary
// (internal/proxycmd), which parses its own flags so that the sidecar
// binary links no cobra, and the init container's strait-init
// (internal/proxycmd/initcmd) as its init and cleanup subcommands.
func newProxyCmd() *cobra.Command {
	return &cobra.Command{
		Use:                "proxy --config proxy.yaml",
		Short:              proxycmd.Short,
		Long:               "Run the per-workload proxy: see 'strait proxy --help'.",
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				switch args[0] {
				case "init":
					return initcmd.Init(cmd.Context(), "strait proxy init", args[1:], cmd.OutOrStdout(), cmd.ErrOrStderr())
				case "cleanup":
					return initcmd.Cleanup(cmd.Context(), "strait proxy cleanup", args[1:], cmd.OutOrStdout(), cmd.ErrOrStderr())
				}
			}
			return proxycmd.Main(cmd.Context(), "strait proxy", args, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
}
