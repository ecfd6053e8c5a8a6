package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/strait-mesh/strait/federation"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

func newExportCmd() *cobra.Command {
	var (
		namespace, cluster        string
		ports, consumers, servers []string
	)
	cmd := &cobra.Command{
		Use:   "export <service>",
		Short: "Export a service of a cluster to the other clusters",
		Long: `Export a service of a cluster to the whole federation. Every cluster that
exports the same namespace/service serves one global service (Kubernetes MCS
semantics); when their port definitions conflict, the oldest export wins.
Exporting again updates the export and keeps its creation time.

Strait carries TCP; a UDP port cannot be exported (yet).

Callers accept only the identities an export allows to serve it: by default
any service account of the service's namespace in the exporting cluster's
trust domain (spiffe://<trust domain>/ns/<namespace>/sa/*); --servers narrows
that to the listed service accounts. An endpoint served by any other identity
is ignored, and a destination presenting one is refused.`,
		Example: `  strait export payments --namespace default --cluster west --port http:8080/TCP \
    --consumers spiffe://east.example --servers payments`,
		Args: cobra.ExactArgs(1),
	}
	ef := addEtcdFlags(cmd)
	fs := cmd.Flags()
	fs.StringVarP(&namespace, "namespace", "n", "default", "namespace of the service")
	fs.StringVar(&cluster, "cluster", "", "cluster that exports the service (required)")
	fs.StringArrayVar(&ports, "port", nil, "port as name:port[/TCP] (repeatable, at least one; TCP only)")
	fs.StringSliceVar(&consumers, "consumers", nil,
		"SPIFFE IDs or trust domains (spiffe://td) allowed to connect from other clusters")
	fs.StringSliceVar(&servers, "servers", nil,
		"service accounts of the namespace that may serve the export (default: any service account of the namespace)")
	_ = cmd.MarkFlagRequired("cluster")
	_ = cmd.MarkFlagRequired("port")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		exp := &straitv1.Export{Cluster: cluster, Namespace: namespace, Service: args[0], Consumers: consumers, Servers: servers}
		var errs []error
		for _, p := range ports {
			sp, err := parsePortFlag(p)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			exp.Ports = append(exp.Ports, sp)
		}
		for _, sa := range servers {
			if err := federation.ValidateServiceAccount(sa); err != nil {
				errs = append(errs, fmt.Errorf("--servers: %w", err))
			}
		}
		if err := errors.Join(errs...); err != nil {
			return fmt.Errorf("export: %w", err)
		}
		var stored *straitv1.Export
		err := ef.withStore(cmd.Context(), func(ctx context.Context, st *federation.Store) (err error) {
			stored, err = st.PutExport(ctx, exp)
			return err
		})
		if err != nil {
			return fmt.Errorf("export: %w", err)
		}
		servedBy := "any service account of the namespace"
		if len(stored.GetServers()) > 0 {
			servedBy = "service accounts " + strings.Join(stored.GetServers(), ",")
		}
		fmt.Fprintf(cmd.OutOrStdout(), "exported %s.%s from cluster %s (ports %s; served by %s)\n",
			stored.GetService(), stored.GetNamespace(), stored.GetCluster(), formatPorts(stored.GetPorts()), servedBy)
		return nil
	}
	return cmd
}

// parsePortFlag parses name:port[/TCP]. A UDP port is refused with an
// error matching federation.ErrUDPUnsupported: Strait does not carry UDP.
func parsePortFlag(s string) (*straitv1.ServicePort, error) {
	name, rest, ok := strings.Cut(s, ":")
	if !ok || name == "" {
		return nil, fmt.Errorf("port %q: want name:port[/TCP]", s)
	}
	num, proto, _ := strings.Cut(rest, "/")
	n, err := strconv.ParseUint(num, 10, 16)
	if err != nil || n == 0 {
		return nil, fmt.Errorf("port %q: %q is not 1-65535", s, num)
	}
	sp := &straitv1.ServicePort{Name: name, Port: uint32(n), Protocol: straitv1.Protocol_PROTOCOL_TCP}
	switch strings.ToUpper(proto) {
	case "", "TCP":
	case "UDP":
		return nil, fmt.Errorf("port %q: %w", s, federation.ErrUDPUnsupported)
	default:
		return nil, fmt.Errorf("port %q: protocol must be TCP", s)
	}
	return sp, nil
}

// formatPorts renders ports as name:port/PROTO, comma-separated.
func formatPorts(ports []*straitv1.ServicePort) string {
	out := make([]string, len(ports))
	for i, p := range ports {
		out[i] = fmt.Sprintf("%s:%d/%s", p.GetName(), p.GetPort(), protocolName(p.GetProtocol()))
	}
	return strings.Join(out, ",")
}

func protocolName(p straitv1.Protocol) string {
	if p == straitv1.Protocol_PROTOCOL_UDP {
		return "UDP"
	}
	return "TCP"
}
