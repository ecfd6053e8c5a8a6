package main

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/strait-mesh/strait/federation"
	"github.com/strait-mesh/strait/internal/etcdtest"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

func TestParsePortFlag(t *testing.T) {
	tests := []struct {
		in      string
		want    *straitv1.ServicePort
		wantErr string
		udp     bool
	}{
		{"http:8080", &straitv1.ServicePort{Name: "http", Port: 8080, Protocol: straitv1.Protocol_PROTOCOL_TCP}, "", false},
		{"http:8080/tcp", &straitv1.ServicePort{Name: "http", Port: 8080, Protocol: straitv1.Protocol_PROTOCOL_TCP}, "", false},
		{"dns:53/UDP", nil, "Strait carries TCP only", true},
		{"dns:53/udp", nil, "Strait carries TCP only", true},
		{"x:1/SCTP", nil, "protocol must be TCP", false},
		{"x:0", nil, "not 1-65535", false},
		{"8080", nil, "want name:port", false},
	}
	for _, tt := range tests {
		got, err := parsePortFlag(tt.in)
		if tt.wantErr == "" {
			if err != nil || got.GetName() != tt.want.GetName() || got.GetPort() != tt.want.GetPort() || got.GetProtocol() != tt.want.GetProtocol() {
				t.Errorf("parsePortFlag(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) || errors.Is(err, federation.ErrUDPUnsupported) != tt.udp {
			t.Errorf("parsePortFlag(%q) error = %v, want one mentioning %q (ErrUDPUnsupported: %v)", tt.in, err, tt.wantErr, tt.udp)
		}
	}
}

// TestExportCommand: --servers is stored in the export; a UDP port or a
// bad service account is refused with a clear error and writes nothing.
func TestExportCommand(t *testing.T) {
	srv, cli := etcdtest.Start(t, 1)
	etcd := "--etcd=" + strings.Join(srv.Endpoints(), ",")
	store := federation.NewStore(cli, federation.Keyspace{})

	out, err := runCLI(t, newExportCmd(), "payments", etcd, "-n", "shop", "--cluster", "west",
		"--port", "http:8080", "--servers", "payments,payments-canary")
	if err != nil {
		t.Fatalf("export: %v\n%s", err, out)
	}
	if !strings.Contains(out, "served by service accounts payments,payments-canary") {
		t.Errorf("export output = %q", out)
	}
	exp, err := store.GetExport(context.Background(), "west", "shop", "payments")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(exp.GetServers(), []string{"payments", "payments-canary"}) {
		t.Errorf("stored servers = %v", exp.GetServers())
	}

	refused := []struct {
		name string
		args []string
		want []string
	}{
		{"udp port", []string{"dns", "--port", "dns:53/UDP"}, []string{`port "dns:53/UDP"`, "UDP is not supported: Strait carries TCP only"}},
		{"udp beside tcp", []string{"dns", "--port", "tcp:53", "--port", "dns:53/UDP"}, []string{"UDP is not supported"}},
		{"bad servers", []string{"dns", "--port", "tcp:53", "--servers", "Bad_SA"}, []string{`--servers: service account "Bad_SA"`}},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{etcd, "-n", "shop", "--cluster", "west"}, tt.args...)
			out, err := runCLI(t, newExportCmd(), args...)
			if err == nil {
				t.Fatalf("export accepted %v\n%s", tt.args, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if _, err := store.GetExport(context.Background(), "west", "shop", "dns"); !errors.Is(err, federation.ErrNotFound) {
				t.Errorf("a refused export was written: %v", err)
			}
		})
	}
}
