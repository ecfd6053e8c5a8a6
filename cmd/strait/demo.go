package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/strait-mesh/strait/internal/cmdutil"
	"github.com/strait-mesh/strait/internal/demo"
)

func newDemoCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a demo application that reads the PROXY protocol v2 header of its proxy",
		Long: `Demo applications for trying Strait and for end-to-end tests. Both expect
every connection to start with the PROXY protocol v2 header the destination
proxy writes, which names the caller's SPIFFE ID.`,
	}
	var cluster, listen string
	http := &cobra.Command{
		Use:   "http --listen 127.0.0.1:8080 --cluster west",
		Short: "Answer GET / with the cluster's name and the caller's SPIFFE ID",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s := &demo.HTTPServer{Cluster: cluster, Addr: listen}
			fmt.Fprintf(cmd.ErrOrStderr(), "demo http: cluster %s on %s\n", cluster, listen)
			return cmdutil.IgnoreCanceled(s.Run(cmd.Context()))
		},
	}
	http.Flags().StringVar(&cluster, "cluster", "", "cluster name to answer with")
	http.Flags().StringVar(&listen, "listen", "127.0.0.1:8080", "listen address")
	echo := &cobra.Command{
		Use:   "echo --listen 127.0.0.1:7000",
		Short: "Echo every byte back",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s := &demo.EchoServer{Addr: listen}
			fmt.Fprintf(cmd.ErrOrStderr(), "demo echo on %s\n", listen)
			return cmdutil.IgnoreCanceled(s.Run(cmd.Context()))
		},
	}
	echo.Flags().StringVar(&listen, "listen", "127.0.0.1:7000", "listen address")
	cmd.AddCommand(http, echo)
	return cmd
}
