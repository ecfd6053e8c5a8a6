package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/strait-mesh/strait/federation"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// statusReport is what `strait status` prints; its JSON form is stable.
type statusReport struct {
	Revision       int64           `json:"revision"`
	Clusters       []clusterStatus `json:"clusters"`
	Services       []serviceStatus `json:"services"`
	InvalidRecords []string        `json:"invalidRecords,omitempty"`
}

type clusterStatus struct {
	Name        string          `json:"name"`
	Alive       bool            `json:"alive"`
	TrustDomain string          `json:"trustDomain,omitempty"`
	Gateways    []gatewayStatus `json:"gateways"`
}

type gatewayStatus struct {
	ID        string     `json:"id"`
	Address   string     `json:"address"`
	Region    string     `json:"region,omitempty"`
	Zone      string     `json:"zone,omitempty"`
	Version   string     `json:"version,omitempty"`
	Draining  bool       `json:"draining"`
	StartedAt *time.Time `json:"startedAt,omitempty"`
	Age       string     `json:"age,omitempty"`
}

type serviceStatus struct {
	Namespace  string           `json:"namespace"`
	Name       string           `json:"name"`
	Ports      []string         `json:"ports"`
	ExportedBy []string         `json:"exportedBy"`
	ServedBy   []string         `json:"servedBy"`
	Conflicts  []conflictStatus `json:"conflicts,omitempty"`
}

type conflictStatus struct {
	Cluster string `json:"cluster"`
	Reason  string `json:"reason"`
}

func newStatusCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show clusters, live gateways, exported services and conflicts",
		Long: `Show the federation as etcd holds it: every cluster with its live gateways
(region and age), every exported service with the clusters that export it and
those that serve it now (exporting clusters with a live gateway), and port
conflicts between exports of the same service (the oldest export wins).`,
		Args: cobra.NoArgs,
	}
	ef := addEtcdFlags(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if output != "table" && output != "json" {
			return fmt.Errorf("status: unknown output format %q (want table or json)", output)
		}
		var (
			snap    *federation.Snapshot
			invalid []error
		)
		err := ef.do(cmd.Context(), func(ctx context.Context, cli *clientv3.Client) (err error) {
			snap, invalid, err = federation.ListSnapshot(ctx, cli, ef.keyspace())
			return err
		})
		if err != nil {
			return fmt.Errorf("status: %w", err)
		}
		report := buildStatus(snap, invalid, time.Now())
		if output == "json" {
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(report)
		}
		return printStatusTable(cmd.OutOrStdout(), report)
	}
	return cmd
}

func buildStatus(snap *federation.Snapshot, invalid []error, now time.Time) statusReport {
	r := statusReport{Revision: snap.Revision(), Clusters: []clusterStatus{}, Services: []serviceStatus{}}
	for _, c := range snap.Clusters() {
		cs := clusterStatus{Name: c, Alive: snap.ClusterAlive(c), TrustDomain: snap.TrustDomain(c), Gateways: []gatewayStatus{}}
		for _, g := range snap.Gateways(c) {
			gs := gatewayStatus{ID: g.GetId(), Address: g.GetAddress(), Region: g.GetRegion(), Zone: g.GetZone(),
				Version: g.GetVersion(), Draining: g.GetDraining()}
			if g.GetStartedAt() != nil {
				t := g.GetStartedAt().AsTime()
				gs.StartedAt = &t
				gs.Age = now.Sub(t).Truncate(time.Second).String()
			}
			cs.Gateways = append(cs.Gateways, gs)
		}
		r.Clusters = append(r.Clusters, cs)
	}
	for _, k := range snap.Services() {
		svc, _ := snap.Service(k)
		ss := serviceStatus{Namespace: k.Namespace, Name: k.Name, Ports: []string{}, ExportedBy: []string{},
			ServedBy: append([]string{}, svc.Clusters...)}
		for _, p := range svc.Ports {
			ss.Ports = append(ss.Ports, formatPorts([]*straitv1.ServicePort{p}))
		}
		for _, e := range snap.Exports(k) {
			ss.ExportedBy = append(ss.ExportedBy, e.GetCluster())
		}
		for _, c := range svc.Conflicts {
			ss.Conflicts = append(ss.Conflicts, conflictStatus{Cluster: c.Cluster, Reason: c.Reason})
		}
		r.Services = append(r.Services, ss)
	}
	for _, err := range invalid {
		r.InvalidRecords = append(r.InvalidRecords, err.Error())
	}
	return r
}

func printStatusTable(w io.Writer, r statusReport) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "CLUSTER\tALIVE\tGATEWAY\tADDRESS\tREGION\tZONE\tAGE\n")
	for _, c := range r.Clusters {
		if len(c.Gateways) == 0 {
			fmt.Fprintf(tw, "%s\t%t\t-\t-\t-\t-\t-\n", c.Name, c.Alive)
		}
		for _, g := range c.Gateways {
			state := fmt.Sprint(c.Alive)
			if g.Draining {
				state += " (draining)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.Name, state, g.ID, g.Address,
				dash(g.Region), dash(g.Zone), dash(g.Age))
		}
	}
	fmt.Fprintf(tw, "\nSERVICE\tPORTS\tEXPORTED BY\tSERVED BY\tCONFLICTS\n")
	for _, s := range r.Services {
		var conflicts []string
		for _, c := range s.Conflicts {
			conflicts = append(conflicts, c.Cluster+": "+c.Reason)
		}
		fmt.Fprintf(tw, "%s.%s\t%s\t%s\t%s\t%s\n", s.Name, s.Namespace, strings.Join(s.Ports, ","),
			strings.Join(s.ExportedBy, ","), dash(strings.Join(s.ServedBy, ",")), dash(strings.Join(conflicts, "; ")))
	}
	if len(r.InvalidRecords) > 0 {
		fmt.Fprintf(tw, "\n%d invalid records skipped:\n", len(r.InvalidRecords))
		for _, e := range r.InvalidRecords {
			fmt.Fprintf(tw, "  %s\n", e)
		}
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
