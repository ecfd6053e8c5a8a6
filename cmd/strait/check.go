package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/strait-mesh/strait/internal/check"
)

func newCheckCmd() *cobra.Command {
	var (
		output  string
		wait    bool
		timeout time.Duration
		cluster string
		admin   string
	)
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Check the federation end to end: etcd, trust, gateways, exports, signed path probes",
		Long: `Check the federation from anywhere that reaches etcd and the gateways:

  etcd      every endpoint answers with a leader and applies what the cluster
            committed; a TLS endpoint's certificate is not expiring; the
            keyspace reads
  trust     every cluster's bundle is in etcd, parses, and its roots are not
            expiring; every gateway (on its admin port, /trust) trusts every
            other cluster's current roots
  gateways  every cluster has live gateways; each advertised ingress completes a
            QUIC handshake with its cluster's gateway SPIFFE ID (with the RTT);
            no stale or conflicting records
  exports   every export has a live gateway and ready endpoints; consumers parse
  path      for each ordered pair of clusters, a gateway of the first carries a
            probe through the data path to the second, whose gateway signs our
            nonce with its SVID; the statement is verified against the bundles
            in etcd, proving routing and identity in both directions

Each check is ok, warn or fail with a hint; a failing peer names the layer
(dns, quic, identity, stream). The command exits non-zero when a check fails.
With --wait it repeats until nothing fails or --timeout passes.

With --cluster NAME, run on a gateway's host or in its pod, the checks take
that cluster's point of view: the path probes and the trust comparison start
only from NAME (through --admin, the local gateway's admin address, when
given, instead of the admin addresses in its records); the handshakes go from
here to every ingress, NAME's included; NAME must have gateway records.`,
		Args: cobra.NoArgs,
	}
	ef := addEtcdFlags(cmd)
	fs := cmd.Flags()
	fs.StringVarP(&output, "output", "o", "table", "output format: table or json")
	fs.BoolVar(&wait, "wait", false, "repeat the checks until none fails or --timeout passes")
	fs.DurationVar(&timeout, "timeout", 30*time.Second, "bound on the whole run")
	fs.StringVar(&cluster, "cluster", "", "check from this cluster's point of view (run on one of its gateways' hosts or pods)")
	fs.StringVar(&admin, "admin", "", "with --cluster: the local gateway's admin address (host:port) to probe and compare trust through")
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
		rep, err := runCheck(ctx, check.Config{Etcd: cli, Keyspace: ef.keyspace(), EtcdCertFile: ef.cert, Cluster: cluster, Admin: admin}, wait, cmd.ErrOrStderr())
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

func runCheck(ctx context.Context, cfg check.Config, wait bool, progress io.Writer) (*check.Report, error) {
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
