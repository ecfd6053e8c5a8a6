package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/strait-mesh/strait/federation"
	"github.com/strait-mesh/strait/gateway"
)

// gatewaysReport is what `strait gateways` prints; its JSON form is stable.
type gatewaysReport struct {
	Gateways []gatewayLinks `json:"gateways"`
}

// gatewayLinks is one gateway and its links, or why they could not be read.
type gatewayLinks struct {
	Cluster string               `json:"cluster"`
	Gateway string               `json:"gateway"`
	Admin   string               `json:"admin"`
	Links   []gateway.LinkStatus `json:"links"`
	Error   string               `json:"error,omitempty"`
}

func newGatewaysCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "gateways",
		Short: "Show each gateway's links to the remote gateways: alive, RTT, loss, streams, last error",
		Long: `Show, for each live gateway in etcd, what it measures of its links to the
remote gateways (read from its admin port, GET /links): whether the QUIC
connection is up, RTT p50/p95/p99 over the last five minutes, the fraction of
packets lost, open streams, new streams per second over the last ten seconds,
and the last dial or stream error. A gateway dials a remote gateway when it
first has a stream for it.`,
		Args: cobra.NoArgs,
	}
	ef := addEtcdFlags(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if output != "table" && output != "json" {
			return fmt.Errorf("gateways: unknown output format %q (want table or json)", output)
		}
		var snap *federation.Snapshot
		err := ef.do(cmd.Context(), func(ctx context.Context, cli *clientv3.Client) (err error) {
			snap, _, err = federation.ListSnapshot(ctx, cli, ef.keyspace())
			return err
		})
		if err != nil {
			return fmt.Errorf("gateways: %w", err)
		}
		ctx, cancel := ef.withTimeout(cmd.Context())
		defer cancel()
		rep := collectLinks(ctx, snap)
		if output == "json" {
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(rep)
		}
		return printGateways(cmd.OutOrStdout(), rep)
	}
	return cmd
}

func collectLinks(ctx context.Context, snap *federation.Snapshot) gatewaysReport {
	rep := gatewaysReport{Gateways: []gatewayLinks{}}
	client := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 5 * time.Second}
	for _, c := range snap.Clusters() {
		for _, gw := range snap.Gateways(c) {
			gl := gatewayLinks{Cluster: c, Gateway: gw.GetId(), Admin: gw.GetAdminAddress(), Links: []gateway.LinkStatus{}}
			links, err := fetchLinks(ctx, client, gw.GetAdminAddress())
			if err != nil {
				gl.Error = err.Error()
			} else {
				gl.Links = links.Links
			}
			rep.Gateways = append(rep.Gateways, gl)
		}
	}
	return rep
}

func fetchLinks(ctx context.Context, client *http.Client, admin string) (*gateway.Links, error) {
	if admin == "" {
		return nil, fmt.Errorf("no admin address in the gateway's record")
	}
	u := (&url.URL{Scheme: "http", Host: admin, Path: "/links"}).String()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	var l gateway.Links
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&l); err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	return &l, nil
}

func printGateways(w io.Writer, rep gatewaysReport) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "GATEWAY\tPEER\tALIVE\tRTT P50\tP95\tP99\tLOSS\tOPEN\tSTREAMS/S\tLAST ERROR\n")
	for _, g := range rep.Gateways {
		from := g.Cluster + "/" + g.Gateway
		if g.Error != "" {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t-\t-\t-\tadmin unreachable: %s\n", from, g.Error)
			continue
		}
		if len(g.Links) == 0 {
			fmt.Fprintf(tw, "%s\t(no links yet)\t-\t-\t-\t-\t-\t-\t-\t-\n", from)
		}
		for _, l := range g.Links {
			fmt.Fprintf(tw, "%s\t%s/%s\t%t\t%s\t%s\t%s\t%.2f%%\t%d\t%.1f\t%s\n", from, l.Cluster, l.Gateway, l.Alive,
				ms(l.RTTP50), ms(l.RTTP95), ms(l.RTTP99), 100*l.Loss, l.OpenStreams, l.StreamsPerSecond, dash(l.LastError))
		}
	}
	return tw.Flush()
}

func ms(seconds float64) string {
	if seconds == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fms", seconds*1000)
}
