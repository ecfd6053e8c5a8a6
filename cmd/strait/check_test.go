package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"github.com/strait-mesh/strait/federation"
	"github.com/strait-mesh/strait/internal/check"
	"github.com/strait-mesh/strait/internal/devcluster"
	"github.com/strait-mesh/strait/internal/devcluster/devclustertest"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
	"github.com/strait-mesh/strait/trust"
)

// childEnv makes the test binary run the strait command line given in its
// arguments instead of the tests: a gateway in a process of its own that a
// test can SIGKILL.
const childEnv = "STRAIT_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// startDev runs dev mode's federation (on free ports) until the test ends.
// It returns the federation and its data directory.
func startDev(t *testing.T) (*devcluster.Federation, string) {
	t.Helper()
	cfg := devcluster.DefaultConfig(t.TempDir())
	cfg.EtcdClientURL = ""
	cfg.Clusters[0].Client.Upstreams[0].ListenAddr = "127.0.0.1:0"
	f := devclustertest.Start(t, cfg)
	return f, cfg.DataDir
}

// runCheckCmd runs `strait check -o json` with args and returns the report
// and the command's error.
func runCheckCmd(t *testing.T, args ...string) (*check.Report, error) {
	t.Helper()
	var out bytes.Buffer
	root := newRootCmd()
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(append([]string{"check", "-o", "json"}, args...))
	err := root.ExecuteContext(context.Background())
	var rep check.Report
	if jerr := json.Unmarshal(out.Bytes(), &rep); jerr != nil {
		t.Fatalf("check printed no JSON report (%v): %s", jerr, out.String())
	}
	return &rep, err
}

// find returns the results of a category whose check is name.
func find(rep *check.Report, category, name string) []check.Result {
	var out []check.Result
	for _, r := range rep.Results {
		if r.Category == category && r.Check == name {
			out = append(out, r)
		}
	}
	return out
}

func logReport(t *testing.T, rep *check.Report) {
	t.Helper()
	var b strings.Builder
	for _, r := range rep.Results {
		fmt.Fprintf(&b, "\n  %-4s %-8s %-22s %-8s %s", r.Status, r.Category, r.Check, r.Layer, r.Message)
	}
	t.Log(b.String())
}

// TestCheckDevFederation: against dev mode every check is ok, and each of
// the checks the federation calls for is there.
func TestCheckDevFederation(t *testing.T) {
	f, _ := startDev(t)
	etcd := strings.Join(f.EtcdEndpoints(), ",")
	rep, err := runCheckCmd(t, "--etcd", etcd, "--timeout", "60s")
	logReport(t, rep)
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	if n := rep.Count(check.OK); n != len(rep.Results) {
		t.Fatalf("%d of %d checks ok, want all", n, len(rep.Results))
	}
	for _, want := range []struct{ category, check string }{
		{check.CategoryTrust, "east"}, {check.CategoryTrust, "west"},
		{check.CategoryTrust, "east trusts west"}, {check.CategoryTrust, "west trusts east"},
		{check.CategoryEtcd, "progress " + f.EtcdEndpoints()[0]},
		{check.CategoryGateways, "east/gw-0"}, {check.CategoryGateways, "west/gw-0"},
		{check.CategoryExports, "hello.default from west"},
		{check.CategoryPath, "east -> west"}, {check.CategoryPath, "west -> east"},
	} {
		got := find(rep, want.category, want.check)
		if len(got) != 1 {
			t.Errorf("%s %q: %d results, want 1", want.category, want.check, len(got))
			continue
		}
		if want.category == check.CategoryGateways || want.category == check.CategoryPath {
			if got[0].RTTSeconds <= 0 {
				t.Errorf("%s %q: no RTT measured", want.category, want.check)
			}
		}
	}
	if len(find(rep, check.CategoryEtcd, f.EtcdEndpoints()[0])) != 1 {
		t.Errorf("no etcd check for %s", f.EtcdEndpoints()[0])
	}

	// The table form: one line per check and the tally.
	var out bytes.Buffer
	root := newRootCmd()
	root.SetOut(&out)
	root.SetArgs([]string{"check", "--etcd", etcd, "--timeout", "60s"})
	if err := root.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("check (table): %v\n%s", err, out.String())
	}
	t.Logf("\n%s", out.String())
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if !strings.HasPrefix(lines[0], "STATUS") || lines[len(lines)-1] != fmt.Sprintf("%d ok, 0 warn, 0 fail", len(rep.Results)) {
		t.Errorf("table output:\n%s", out.String())
	}
}

// TestCheckKilledGateway: a second gateway of west runs in its own process;
// once the check is all ok with it, the process is SIGKILLed (its record
// stays in etcd until its lease expires). The check then fails at the QUIC
// layer for that gateway, naming it, within its timeout; the path checks
// still pass through west's other gateway.
func TestCheckKilledGateway(t *testing.T) {
	f, dataDir := startDev(t)
	etcd := f.EtcdEndpoints()
	child := startChildGateway(t, etcd, dataDir)

	// Poll until the whole federation, with gw-1, checks ok.
	deadline := time.Now().Add(60 * time.Second)
	for {
		rep, err := runCheckCmd(t, "--etcd", strings.Join(etcd, ","), "--timeout", "30s")
		if err == nil && len(find(rep, check.CategoryGateways, "west/gw-1")) == 1 {
			break
		}
		if time.Now().After(deadline) {
			logReport(t, rep)
			t.Fatalf("the federation with west/gw-1 did not check ok within 60s: %v\ngateway log:\n%s", err, child.log())
		}
		child.pause(t, 200*time.Millisecond)
	}

	child.kill(t)
	const timeout = 20 * time.Second
	start := time.Now()
	rep, err := runCheckCmd(t, "--etcd", strings.Join(etcd, ","), "--timeout", timeout.String())
	took := time.Since(start)
	logReport(t, rep)
	if err == nil {
		t.Fatal("check passed with west/gw-1 killed")
	}
	if took > timeout {
		t.Errorf("check took %s, beyond its timeout %s", took, timeout)
	}
	got := find(rep, check.CategoryGateways, "west/gw-1")
	if len(got) != 1 {
		t.Fatalf("%d results for gateways west/gw-1, want 1", len(got))
	}
	if r := got[0]; r.Status != check.Fail || r.Layer != check.LayerQUIC || !strings.Contains(r.Message, "gw-1") || r.Cluster != "west" {
		t.Errorf("west/gw-1: %+v, want a failure at the quic layer naming gw-1", r)
	}
	// On loopback the kernel answers for the dead process' port.
	if !strings.Contains(got[0].Message, "UDP port unreachable") {
		t.Errorf("west/gw-1: %q does not say that the UDP port is closed", got[0].Message)
	}
	// Exactly that check fails: west's other gateway carries the paths.
	if n := rep.Count(check.Fail); n != 1 {
		t.Errorf("%d checks failed, want 1 (west/gw-1)", n)
	}
	for _, name := range []string{"east -> west", "west -> east"} {
		if p := find(rep, check.CategoryPath, name); len(p) != 1 || p[0].Status != check.OK {
			t.Errorf("path %s: %+v, want ok through west/gw-0", name, p)
		}
	}
}

// TestCheckDeletedBundle: east's bundle deleted and not restored fails the
// trust check, naming east. In the live keyspace east's publisher restores
// a deleted bundle within about a second (by design), so the check runs
// against a copy of the keyspace taken at one revision without that key.
func TestCheckDeletedBundle(t *testing.T) {
	f, _ := startDev(t)
	deleted := federation.Keyspace{}.Bundle("east.strait.local")
	copied := copyKeyspace(t, f.EtcdEndpoints(), "/check-copy/", deleted, func([]byte) []byte { return nil })
	rep, err := runCheckCmd(t, "--etcd", strings.Join(f.EtcdEndpoints(), ","), "--prefix", copied.Root(), "--timeout", "60s")
	logReport(t, rep)
	if err == nil {
		t.Fatal("check passed without east's bundle")
	}
	east := find(rep, check.CategoryTrust, "east")
	if len(east) != 1 || east[0].Status != check.Fail || !strings.Contains(east[0].Message, "east") {
		t.Fatalf("trust east: %+v, want a failure naming east", east)
	}
	if west := find(rep, check.CategoryTrust, "west"); len(west) != 1 || west[0].Status != check.OK {
		t.Errorf("trust west: %+v, want ok", west)
	}
	// Nothing east signs verifies any more: its gateway's identity and the
	// path to east fail too, at the identity layer.
	for _, r := range append(find(rep, check.CategoryGateways, "east/gw-0"), find(rep, check.CategoryPath, "west -> east")...) {
		if r.Status != check.Fail || r.Layer != check.LayerIdentity {
			t.Errorf("%s %s: %+v, want an identity failure", r.Category, r.Check, r)
		}
	}
}

// childGateway is a gateway of west, "gw-1", in a process of its own.
type childGateway struct {
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{} // closed when the process has exited
	waitErr error
}

// startChildGateway starts west's gateway gw-1 in a child process with
// west's CA (loaded from the dev federation's data directory); its record
// lives under a 60s lease, so that it outlasts a SIGKILL during the test.
func startChildGateway(t *testing.T, etcd []string, dataDir string) *childGateway {
	t.Helper()
	dir := t.TempDir()
	conf := map[string]any{
		"cluster": "west", "id": "gw-1", "region": "us-west", "zone": "us-west-1b",
		"etcd":          map[string]any{"endpoints": etcd, "leaseTTL": "60s"},
		"identity":      map[string]any{"trustDomain": "west.strait.local", "caDir": filepath.Join(dataDir, "west", "ca")},
		"ingress":       map[string]any{"listen": "127.0.0.1:0"},
		"egress":        map[string]any{"listen": "127.0.0.1:0"},
		"admin":         map[string]any{"listen": "127.0.0.1:0"},
		"snapshotPath":  filepath.Join(dir, "snapshot.json"),
		"endpointCIDRs": []string{"127.0.0.0/8"},
		"logLevel":      "warn",
	}
	b, err := json.Marshal(conf)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "gateway.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	c := &childGateway{cmd: exec.Command(os.Args[0], "gateway", "--config", path), logPath: filepath.Join(dir, "gateway.log"), exited: make(chan struct{})}
	c.cmd.Env = append(os.Environ(), childEnv+"=1")
	logFile, err := os.Create(c.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	c.cmd.Stdout, c.cmd.Stderr = logFile, logFile
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.waitErr = c.cmd.Wait(); close(c.exited) }()
	t.Cleanup(func() {
		_ = c.cmd.Process.Kill()
		<-c.exited
	})
	return c
}

func (c *childGateway) log() string {
	b, _ := os.ReadFile(c.logPath)
	return string(b)
}

// pause waits d between two polls, failing the test if the child exits.
func (c *childGateway) pause(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case <-c.exited:
		t.Fatalf("gateway gw-1 exited: %v\n%s", c.waitErr, c.log())
	case <-time.After(d):
	}
}

// kill SIGKILLs the child and waits for it to be gone.
func (c *childGateway) kill(t *testing.T) {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-c.exited
}

// TestCheckWait: `strait check --wait` keeps checking while an export has
// no ready endpoint, says so, and exits ok once that export is withdrawn.
func TestCheckWait(t *testing.T) {
	f, _ := startDev(t)
	cli, err := federation.Dial(federation.ClientConfig{Endpoints: f.EtcdEndpoints()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	st := federation.NewStore(cli, federation.Keyspace{})
	_, err = st.PutExport(ctx, &straitv1.Export{Cluster: "west", Namespace: "default", Service: "later",
		Ports:     []*straitv1.ServicePort{{Name: "tcp", Port: 9999, Protocol: straitv1.Protocol_PROTOCOL_TCP}},
		Consumers: []string{"spiffe://east.strait.local"}, Servers: []string{"later"}})
	if err != nil {
		t.Fatal(err)
	}

	progress, progressW := io.Pipe()
	var out bytes.Buffer
	root := newRootCmd()
	root.SetOut(&out)
	root.SetErr(progressW)
	root.SetArgs([]string{"check", "-o", "json", "--wait", "--timeout", "60s", "--etcd", strings.Join(f.EtcdEndpoints(), ",")})
	done := make(chan error, 1)
	go func() {
		err := root.ExecuteContext(ctx)
		progressW.Close()
		done <- err
	}()
	sc := bufio.NewScanner(progress)
	if !sc.Scan() {
		t.Fatalf("check --wait exited without waiting: %v", <-done)
	}
	line := sc.Text()
	if !strings.Contains(line, "waiting:") || !strings.Contains(line, "later.default from west") {
		t.Fatalf("progress %q, want a wait for the export later.default", line)
	}
	go func() { _, _ = io.Copy(io.Discard, progress) }()
	if err := st.DeleteExport(ctx, "west", "default", "later"); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("check --wait: %v\n%s", err, out.String())
	}
	var rep check.Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	logReport(t, &rep)
	if rep.Count(check.OK) != len(rep.Results) || len(find(&rep, check.CategoryExports, "later.default from west")) != 0 {
		t.Fatalf("final report is not all ok without the export later.default")
	}
}

// TestCheckStaleTrust: etcd publishes a rotated bundle of east (a new
// root, the next sequence) that west's gateway has not taken up. The
// gateways keep the live keyspace; the check reads a copy of it at one
// revision in which east's bundle is the rotated one, so what the gateways
// report on /trust is the old bundle. "west trusts east" fails naming both
// clusters and the old bundle; "east trusts west" stays ok.
func TestCheckStaleTrust(t *testing.T) {
	f, _ := startDev(t)
	rotated := federation.Keyspace{}.Bundle("east.strait.local")
	copied := copyKeyspace(t, f.EtcdEndpoints(), "/check-rotated/", rotated, func(value []byte) []byte {
		old, _, err := trust.UnmarshalBundle(value)
		if err != nil {
			t.Fatal(err)
		}
		ca, err := trust.NewCA(trust.CAConfig{TrustDomain: spiffeid.RequireTrustDomainFromString("east.strait.local")})
		if err != nil {
			t.Fatal(err)
		}
		b, err := proto.Marshal(ca.TrustBundle(old.GetSequence()+1, time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		return b
	})
	rep, err := runCheckCmd(t, "--etcd", strings.Join(f.EtcdEndpoints(), ","), "--prefix", copied.Root(), "--timeout", "60s")
	logReport(t, rep)
	if err == nil {
		t.Fatal("check passed with west's gateway holding east's old bundle")
	}
	got := find(rep, check.CategoryTrust, "west trusts east")
	if len(got) != 1 || got[0].Status != check.Fail {
		t.Fatalf("west trusts east: %+v, want a failure", got)
	}
	for _, s := range []string{"cluster west does not trust east's current roots", "gw-0 holds an old bundle", "lacks 1 of 1 current roots"} {
		if !strings.Contains(got[0].Message, s) {
			t.Errorf("west trusts east: %q does not say %q", got[0].Message, s)
		}
	}
	if r := find(rep, check.CategoryTrust, "east trusts west"); len(r) != 1 || r[0].Status != check.OK {
		t.Errorf("east trusts west: %+v, want ok", r)
	}
	// The rotated bundle itself is sane.
	if r := find(rep, check.CategoryTrust, "east"); len(r) != 1 || r[0].Status != check.OK {
		t.Errorf("trust east: %+v, want ok", r)
	}
}

// TestCheckClusterMode: --cluster checks from one cluster's point of view,
// through its local gateway's admin address with --admin; a wrong
// cluster or a gateway of another cluster fails, naming them.
func TestCheckClusterMode(t *testing.T) {
	f, _ := startDev(t)
	etcd := strings.Join(f.EtcdEndpoints(), ",")
	cli, err := federation.Dial(federation.ClientConfig{Endpoints: f.EtcdEndpoints()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	snap, _, err := federation.ListSnapshot(ctx, cli, federation.Keyspace{})
	if err != nil {
		t.Fatal(err)
	}
	admin := map[string]string{}
	for _, c := range []string{"west", "east"} {
		gws := snap.Gateways(c)
		if len(gws) != 1 || gws[0].GetAdminAddress() == "" {
			t.Fatalf("%s: gateways %v, want one with an admin address", c, gws)
		}
		admin[c] = gws[0].GetAdminAddress()
	}
	type want struct {
		category, check string
		status          check.Status
		says            string
	}
	tests := []struct {
		name    string
		args    []string
		fails   bool
		want    []want
		without []string // checks that must not run
	}{
		{"west through its local gateway", []string{"--cluster", "west", "--admin", admin["west"]}, false, []want{
			{check.CategoryPath, "west -> east", check.OK, "west/" + admin["west"] + " -> east/gw-0"},
			{check.CategoryTrust, "west trusts east", check.OK, "every gateway of west that answered (gw-0)"},
			{check.CategoryGateways, "east/gw-0", check.OK, "QUIC handshake"},
			{check.CategoryGateways, "west/gw-0", check.OK, "QUIC handshake"},
		}, []string{"east -> west", "east trusts west"}},
		{"east through its records", []string{"--cluster", "east"}, false, []want{
			{check.CategoryPath, "east -> west", check.OK, "east/gw-0"},
			{check.CategoryTrust, "east trusts west", check.OK, "every gateway of east that answered (gw-0)"},
		}, []string{"west -> east", "west trusts east"}},
		{"east through west's gateway", []string{"--cluster", "east", "--admin", admin["west"]}, true, []want{
			{check.CategoryTrust, "east/local /trust", check.Fail, "it is a gateway of west, not of east"},
		}, []string{"west -> east", "west trusts east", "east trusts west"}},
		{"an unknown cluster", []string{"--cluster", "north"}, true, []want{
			{check.CategoryGateways, "north", check.Fail, "cluster north (--cluster) has no records in etcd"},
		}, []string{"west -> east", "east -> west", "west trusts east", "east trusts west"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := runCheckCmd(t, append([]string{"--etcd", etcd, "--timeout", "60s"}, tc.args...)...)
			logReport(t, rep)
			if (err != nil) != tc.fails {
				t.Fatalf("check %v: error %v, want failure %t", tc.args, err, tc.fails)
			}
			for _, w := range tc.want {
				got := find(rep, w.category, w.check)
				if len(got) != 1 || got[0].Status != w.status || !strings.Contains(got[0].Message, w.says) {
					t.Errorf("%s %q: %+v, want one %s saying %q", w.category, w.check, got, w.status, w.says)
				}
			}
			for _, r := range rep.Results {
				for _, name := range tc.without {
					if r.Check == name {
						t.Errorf("%s %q ran from another cluster's point of view: %+v", r.Category, r.Check, r)
					}
				}
			}
		})
	}
	// --admin names a gateway of a cluster: without --cluster it is refused.
	root := newRootCmd()
	root.SetOut(io.Discard)
	root.SetErr(io.Discard)
	root.SetArgs([]string{"check", "--etcd", etcd, "--admin", admin["west"]})
	if err := root.ExecuteContext(context.Background()); err == nil || !strings.Contains(err.Error(), "needs the cluster") {
		t.Errorf("--admin without --cluster: %v, want a config error", err)
	}
}

// copyKeyspace copies the live keyspace, as etcd holds it at one revision,
// under prefix, with the value of key replaced by edit's result (nil
// leaves key out), and returns the copy's keyspace. It fails the test when
// key is not in the live keyspace.
func copyKeyspace(t *testing.T, endpoints []string, prefix, key string, edit func(value []byte) []byte) federation.Keyspace {
	t.Helper()
	cli, err := federation.Dial(federation.ClientConfig{Endpoints: endpoints})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	live, copied := federation.Keyspace{}, federation.Keyspace{Prefix: prefix}
	resp, err := cli.Get(ctx, live.Root(), clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, kv := range resp.Kvs {
		value := kv.Value
		if string(kv.Key) == key {
			found = true
			if value = edit(value); value == nil {
				continue
			}
		}
		if _, err := cli.Put(ctx, copied.Root()+strings.TrimPrefix(string(kv.Key), live.Root()), string(value)); err != nil {
			t.Fatal(err)
		}
	}
	if !found {
		t.Fatalf("%s is not in etcd", key)
	}
	return copied
}
