package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	"github.com/strait-mesh/strait/federation"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Read or replace the gateway configuration kept in etcd",
		Long: `Gateways apply the configuration kept in etcd live, without a restart: the
global configuration (config/global), with a cluster's own configuration
(config/clusters/<cluster>) merged over it. Files are YAML or JSON with the
protojson field names of strait.v1.GatewayConfig, for example:

  drainTimeout: 20s
  idleTimeout: 45s
  failover:
    regionOrder: [eu-west, us-east]
    consecutiveFailures: 5`,
	}
	cmd.AddCommand(newConfigGetCmd(), newConfigSetCmd())
	return cmd
}

func newConfigGetCmd() *cobra.Command {
	var cluster, output string
	cmd := &cobra.Command{
		Use:   "get",
		Short: "Print the stored configuration (global, or one cluster's with --cluster)",
		Args:  cobra.NoArgs,
	}
	ef := addEtcdFlags(cmd)
	cmd.Flags().StringVar(&cluster, "cluster", "", "print this cluster's own configuration instead of the global one")
	cmd.Flags().StringVarP(&output, "output", "o", "yaml", "output format: yaml or json")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if output != "yaml" && output != "json" {
			return fmt.Errorf("config get: unknown output format %q (want yaml or json)", output)
		}
		var cfg *straitv1.GatewayConfig
		err := ef.withStore(cmd.Context(), func(ctx context.Context, st *federation.Store) (err error) {
			cfg, err = st.GetConfig(ctx, cluster)
			return err
		})
		if errors.Is(err, federation.ErrNotFound) {
			cfg, err = &straitv1.GatewayConfig{}, nil
		}
		if err != nil {
			return fmt.Errorf("config get: %w", err)
		}
		js, err := protojson.Marshal(cfg)
		if err != nil {
			return fmt.Errorf("config get: %w", err)
		}
		if output == "json" {
			// protojson's spacing is deliberately unstable: normalise it.
			var buf bytes.Buffer
			if err := json.Indent(&buf, js, "", "  "); err != nil {
				return fmt.Errorf("config get: %w", err)
			}
			buf.WriteByte('\n')
			_, err = buf.WriteTo(cmd.OutOrStdout())
			return err
		}
		y, err := yaml.JSONToYAML(js)
		if err != nil {
			return fmt.Errorf("config get: %w", err)
		}
		_, err = cmd.OutOrStdout().Write(y)
		return err
	}
	return cmd
}

func newConfigSetCmd() *cobra.Command {
	var cluster, file string
	cmd := &cobra.Command{
		Use:   "set -f <file>",
		Short: "Replace the stored configuration (global, or one cluster's with --cluster) with a file",
		Args:  cobra.NoArgs,
	}
	ef := addEtcdFlags(cmd)
	cmd.Flags().StringVar(&cluster, "cluster", "", "set this cluster's own configuration instead of the global one")
	cmd.Flags().StringVarP(&file, "file", "f", "", "YAML or JSON file, or - for stdin (required)")
	_ = cmd.MarkFlagRequired("file")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, err := readConfigFile(file, cmd.InOrStdin())
		if err != nil {
			return fmt.Errorf("config set: %w", err)
		}
		err = ef.withStore(cmd.Context(), func(ctx context.Context, st *federation.Store) error {
			return st.PutConfig(ctx, cluster, cfg)
		})
		if err != nil {
			return fmt.Errorf("config set: %w", err)
		}
		target := "global configuration"
		if cluster != "" {
			target = "configuration of cluster " + cluster
		}
		fmt.Fprintf(cmd.OutOrStdout(), "set the %s\n", target)
		return nil
	}
	return cmd
}

// readConfigFile reads a GatewayConfig from YAML or JSON. Unknown fields are
// an error: a policy the gateways do not understand must not be stored.
func readConfigFile(path string, stdin io.Reader) (*straitv1.GatewayConfig, error) {
	var data []byte
	var err error
	if path == "-" {
		data, err = io.ReadAll(io.LimitReader(stdin, federation.MaxRecordSize+1))
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, err
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	cfg := &straitv1.GatewayConfig{}
	if string(js) == "null" {
		return cfg, nil
	}
	if err := protojson.Unmarshal(js, cfg); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}
