package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/strait-mesh/strait/internal/check"
)

func newCheckCmd() *cobra.Command {
	var (
		output  string
		wait    bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Check the federation end to end: etcd, trust, gateways, exports, signed path probes",
		Long: `Check the federation from anywhere that reaches etcd and the gateways:

  etcd      every endpoint answers with a leader; the keyspace reads
  trust     every cluster's bundle is in etcd, parses, and its roots are not expiring
  gateways  every cluster has live gateways; each advertised ingress completes a
            QUIC handshake with its cluster's gateway SPIFFE ID (with the RTT)
  exports   every export has a live gateway and ready endpoints; consumers parse
  path      for each ordered pair of clusters, a gateway of the first carries a
            probe through the data path to the second, whose gateway signs our
            nonce with its SVID; the statement is verified against the bundles
            in etcd, proving routing and identity in both directions

Each check is ok, warn or fail with a hint; a failing peer names the layer
(dns, quic, identity, stream). The command exits non-zero when a check fails.
With --wait it repeats until nothing fails or --timeout passes.`,
		Args: cobra.NoArgs,
	}
	ef := addEtcdFlags(cmd)
	fs := cmd.Flags()
	fs.StringVarP(&output, "output", "o", "table", "output format: table or json")
	fs.BoolVar(&wait, "wait", false, "repeat the checks until none fails or --timeout passes")
	fs.DurationVar(&timeout, "timeout", 30*time.Second, "bound on the whole run")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if output != "table" && output != "json" {
			return fmt.Errorf("check: unknown output format %q (want table or json)", output)
		}
		if timeout <= 0 {
			return fmt.Errorf("check: --timeout must be positive")
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
		defer cancel()
		cli, err := ef.client(ctx)
		if err != nil {
			return fmt.Errorf("check: %w", err)
		}
		defer cli.Close()
		rep, err := runCheck(ctx, cli, ef, wait, cmd.ErrOrStderr())
		if err != nil {
			return err
		}
		if output == "json" {
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			if err := enc.Encode(rep); err != nil {
				return err
			}
		} else if err := printCheckTable(cmd.OutOrStdout(), rep); err != nil {
			return err
		}
		if n := rep.Count(check.Fail); n > 0 {
			return fmt.Errorf("check: %d of %d checks failed", n, len(rep.Results))
		}
		return nil
	}
	return cmd
}

func runCheck(ctx context.Context, cli *clientv3.Client, ef *etcdFlags, wait bool, progress io.Writer) (*check.Report, error) {
	cfg := check.Config{Etcd: cli, Keyspace: ef.keyspace(), EtcdCertFile: ef.cert}
	if !wait {
		return check.Run(ctx, cfg)
	}
	return check.Wait(ctx, cfg, time.Second, func(rep *check.Report) {
		for _, r := range rep.Results {
			if r.Status == check.Fail {
				fmt.Fprintf(progress, "waiting: %d checks fail, first %s %s: %s\n", rep.Count(check.Fail), r.Category, r.Check, r.Message)
				return
			}
		}
	})
}

func printCheckTable(w io.Writer, rep *check.Report) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "STATUS\tCATEGORY\tCHECK\tLAYER\tMESSAGE\n")
	for _, r := range rep.Results {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Status, r.Category, r.Check, dash(r.Layer), r.Message)
		if r.Hint != "" && r.Status != check.OK {
			fmt.Fprintf(tw, "\t\t\t\thint: %s\n", r.Hint)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "\n%d ok, %d warn, %d fail\n", rep.Count(check.OK), rep.Count(check.Warn), rep.Count(check.Fail))
	return err
}
