package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/strait-mesh/strait/federation"
)

func newUnexportCmd() *cobra.Command {
	var namespace, cluster string
	cmd := &cobra.Command{
		Use:     "unexport <service>",
		Short:   "Withdraw a cluster's export of a service",
		Example: `  strait unexport payments --namespace default --cluster west`,
		Args:    cobra.ExactArgs(1),
	}
	ef := addEtcdFlags(cmd)
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "default", "namespace of the service")
	cmd.Flags().StringVar(&cluster, "cluster", "", "cluster that exports the service (required)")
	_ = cmd.MarkFlagRequired("cluster")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		err := ef.withStore(cmd.Context(), func(ctx context.Context, st *federation.Store) error {
			return st.DeleteExport(ctx, cluster, namespace, args[0])
		})
		if err != nil {
			return fmt.Errorf("unexport: %w", err)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "unexported %s.%s from cluster %s\n", args[0], namespace, cluster)
		return nil
	}
	return cmd
}
