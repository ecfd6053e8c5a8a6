package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/strait-mesh/strait/federation"
	"github.com/strait-mesh/strait/federation/embedded"
	"github.com/strait-mesh/strait/internal/etcdtest"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// runCLI runs one command in-process and returns its output.
func runCLI(t *testing.T, cmd *cobra.Command, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := cmd.ExecuteContext(ctx)
	return out.String(), err
}

func TestDefaultEndpointIsDevMode(t *testing.T) {
	if federation.DefaultEndpoint != embedded.DefaultClientURL {
		t.Fatalf("federation.DefaultEndpoint %q != embedded.DefaultClientURL %q",
			federation.DefaultEndpoint, embedded.DefaultClientURL)
	}
	f := addEtcdFlags(&cobra.Command{})
	if got := f.endpoints; len(got) != 1 || got[0] != embedded.DefaultClientURL {
		t.Fatalf("default --etcd = %v", got)
	}
}

func TestFederationCLI(t *testing.T) {
	srv, cli := etcdtest.Start(t, 1)
	etcd := "--etcd=" + strings.Join(srv.Endpoints(), ",")
	ks := federation.Keyspace{}

	// A live gateway in west; east only exports.
	reg, err := federation.NewRegistrar(federation.RegistrarConfig{Client: cli, TTL: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	reg.Put(ks.Gateway("west", "gw-0"), &straitv1.Gateway{Cluster: "west", Id: "gw-0", TrustDomain: "west.example",
		Address: "10.1.0.1:4443", Region: "eu-west", Zone: "eu-west-1a", StartedAt: timestamppb.New(time.Now().Add(-time.Minute))})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- reg.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	<-reg.Registered()

	out, err := runCLI(t, newExportCmd(), "payments", etcd, "--namespace", "shop", "--cluster", "west",
		"--port", "http:8080/TCP", "--port", "grpc:9090", "--consumers", "spiffe://east.example")
	if err != nil {
		t.Fatalf("export: %v\n%s", err, out)
	}
	if !strings.Contains(out, "exported payments.shop from cluster west") {
		t.Errorf("export output = %q", out)
	}
	// East exports the same service later with a conflicting port.
	if out, err := runCLI(t, newExportCmd(), "payments", etcd, "-n", "shop", "--cluster", "east",
		"--port", "http:8081/TCP"); err != nil {
		t.Fatalf("export east: %v\n%s", err, out)
	}
	// Invalid input is refused with every problem.
	if out, err := runCLI(t, newExportCmd(), "Bad_Name", etcd, "--cluster", "west", "--port", "http:80",
		"--consumers", "not-a-spiffe-id"); err == nil || !strings.Contains(err.Error(), "consumer") ||
		!strings.Contains(err.Error(), "service") {
		t.Errorf("invalid export: err = %v, out = %q", err, out)
	}

	out, err = runCLI(t, newStatusCmd(), etcd, "-o", "json")
	if err != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	var report statusReport
	if err := json.Unmarshal([]byte(out), &report); err != nil {
		t.Fatalf("status json: %v\n%s", err, out)
	}
	if len(report.Clusters) != 2 || report.Clusters[0].Name != "east" || report.Clusters[1].Name != "west" {
		t.Fatalf("clusters = %+v", report.Clusters)
	}
	west := report.Clusters[1]
	if !west.Alive || len(west.Gateways) != 1 || west.Gateways[0].Region != "eu-west" || west.Gateways[0].Age == "" {
		t.Errorf("west = %+v", west)
	}
	if report.Clusters[0].Alive {
		t.Errorf("east has no gateway but is alive")
	}
	if len(report.Services) != 1 {
		t.Fatalf("services = %+v", report.Services)
	}
	svc := report.Services[0]
	if svc.Name != "payments" || strings.Join(svc.ExportedBy, ",") != "west,east" ||
		strings.Join(svc.ServedBy, ",") != "west" || strings.Join(svc.Ports, ",") != "http:8080/TCP,grpc:9090/TCP" {
		t.Errorf("service = %+v", svc)
	}
	if len(svc.Conflicts) != 1 || svc.Conflicts[0].Cluster != "east" {
		t.Errorf("conflicts = %+v", svc.Conflicts)
	}

	out, err = runCLI(t, newStatusCmd(), etcd)
	if err != nil || !strings.Contains(out, "payments.shop") || !strings.Contains(out, "eu-west") {
		t.Errorf("status table: %v\n%s", err, out)
	}

	// A running reader (as a gateway runs) sees config changes live.
	cache, err := federation.NewCache(federation.CacheConfig{Sources: []federation.Source{{Client: cli}}})
	if err != nil {
		t.Fatal(err)
	}
	cacheDone := make(chan error, 1)
	go func() { cacheDone <- cache.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-cacheDone })
	<-cache.Synced()

	// Config set from YAML, then get, globally and per cluster.
	dir := t.TempDir()
	file := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(file, []byte("drainTimeout: 20s\nfailover:\n  regionOrder: [eu-west, us-east]\n  consecutiveFailures: 5\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := runCLI(t, newConfigCmd(), "set", etcd, "-f", file); err != nil {
		t.Fatalf("config set: %v\n%s", err, out)
	}
	deadline := time.After(20 * time.Second)
	for {
		changed := cache.Changed()
		if cache.Snapshot().Config("west").GetDrainTimeout().AsDuration() == 20*time.Second {
			break
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatal("the running cache did not see the new config")
		}
	}
	out, err = runCLI(t, newConfigCmd(), "get", etcd)
	if err != nil || !strings.Contains(out, "drainTimeout: 20s") || !strings.Contains(out, "- us-east") {
		t.Errorf("config get: %v\n%s", err, out)
	}
	if err := os.WriteFile(file, []byte(`{"idleTimeout": "45s"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := runCLI(t, newConfigCmd(), "set", etcd, "--cluster", "west", "-f", file); err != nil {
		t.Fatalf("config set west: %v\n%s", err, out)
	}
	out, err = runCLI(t, newConfigCmd(), "get", etcd, "--cluster", "west", "-o", "json")
	if err != nil || !strings.Contains(out, `"idleTimeout": "45s"`) {
		t.Errorf("config get west: %v\n%s", err, out)
	}
	// Unknown fields and invalid values are refused.
	if err := os.WriteFile(file, []byte("drainTimeoutt: 20s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := runCLI(t, newConfigCmd(), "set", etcd, "-f", file); err == nil {
		t.Error("config set accepted an unknown field")
	}
	if err := os.WriteFile(file, []byte("drainTimeout: -5s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := runCLI(t, newConfigCmd(), "set", etcd, "-f", file); err == nil {
		t.Error("config set accepted a negative duration")
	}

	if out, err := runCLI(t, newUnexportCmd(), "payments", etcd, "-n", "shop", "--cluster", "east"); err != nil {
		t.Fatalf("unexport: %v\n%s", err, out)
	}
	if _, err := runCLI(t, newUnexportCmd(), "payments", etcd, "-n", "shop", "--cluster", "east"); err == nil {
		t.Error("unexport of a missing export succeeded")
	}
	snap, _, err := federation.ListSnapshot(context.Background(), cli, ks)
	if err != nil {
		t.Fatal(err)
	}
	if exps := snap.Exports(federation.ServiceKey{Namespace: "shop", Name: "payments"}); len(exps) != 1 {
		t.Errorf("exports after unexport = %v", exps)
	}
}
