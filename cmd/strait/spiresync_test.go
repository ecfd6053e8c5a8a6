package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"

	"github.com/strait-mesh/strait/federation"
	"github.com/strait-mesh/strait/internal/etcdtest"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

func TestSPIRESyncFlagsReportEveryProblem(t *testing.T) {
	out, err := runCLI(t, newSPIRESyncCmd(), "--server-socket", "relative.sock", "--trust-domain", "Not A Domain",
		"--federates", "b.test,bad domain", "--interval", "0s", "--log-level", "loud")
	if err == nil {
		t.Fatalf("bad flags accepted; output %q", out)
	}
	for _, want := range []string{"--server-socket", "--trust-domain", `--federates "bad domain"`, "--interval", "--log-level"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	if _, err := runCLI(t, newSPIRESyncCmd(), "--trust-domain", "a.test"); err == nil || !strings.Contains(err.Error(), "server-socket") {
		t.Errorf("missing --server-socket: got %v", err)
	}
}

func TestServerSocketTarget(t *testing.T) {
	for in, want := range map[string]string{
		"/run/spire/server/api.sock":        "unix:///run/spire/server/api.sock",
		"unix:///run/spire/server/api.sock": "unix:///run/spire/server/api.sock",
		"":                                  "",
		"api.sock":                          "",
		"unix://api.sock":                   "",
	} {
		got, err := serverSocketTarget(in)
		if got != want || (err == nil) != (want != "") {
			t.Errorf("serverSocketTarget(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// TestSPIRESyncRun runs the command against a fake SPIRE bundle API and a
// real etcd: it publishes the server's bundle and writes the other trust
// domain's bundle into SPIRE, until cancelled.
func TestSPIRESyncRun(t *testing.T) {
	srv, cli := etcdtest.Start(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	store := federation.NewStore(cli, federation.Keyspace{})
	peer := &straitv1.TrustBundle{TrustDomain: "b.test", Sequence: 3, X509Authorities: [][]byte{testCA(t, "b").Raw}}
	if err := store.PublishBundle(ctx, peer); err != nil {
		t.Fatal(err)
	}
	fake := &fakeBundleAPI{own: &types.Bundle{TrustDomain: "a.test", SequenceNumber: 1,
		X509Authorities: []*types.X509Certificate{{Asn1: testCA(t, "a").Raw}}}, federated: map[string]*types.Bundle{}}
	socket := serveFakeBundleAPI(t, fake)

	cmd := newSPIRESyncCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs([]string{"--server-socket", socket, "--trust-domain", "a.test", "--federates", "b.test",
		"--interval", "100ms", "--etcd", strings.Join(srv.Endpoints(), ",")})
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(runCtx) }()

	ticker := time.NewTicker(20 * time.Millisecond)
	defer ticker.Stop()
	for {
		snap, _, err := federation.ListSnapshot(ctx, cli, federation.Keyspace{})
		if err == nil && snap.Bundle("a.test") != nil && fake.has("b.test", 3) {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("spire-sync exited: %v\n%s", err, out.String())
		case <-ctx.Done():
			t.Fatalf("spire-sync did not sync within the deadline\n%s", out.String())
		case <-ticker.C:
		}
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("spire-sync returned %v after cancel, want nil", err)
	}
}

// fakeBundleAPI serves GetBundle and BatchSetFederatedBundle of a SPIRE
// server from memory.
type fakeBundleAPI struct {
	bundlev1.UnimplementedBundleServer

	mu        sync.Mutex
	own       *types.Bundle
	federated map[string]*types.Bundle
}

func (f *fakeBundleAPI) GetBundle(context.Context, *bundlev1.GetBundleRequest) (*types.Bundle, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.own, nil
}

func (f *fakeBundleAPI) BatchSetFederatedBundle(_ context.Context, req *bundlev1.BatchSetFederatedBundleRequest) (*bundlev1.BatchSetFederatedBundleResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := &bundlev1.BatchSetFederatedBundleResponse{}
	for _, b := range req.GetBundle() {
		f.federated[b.GetTrustDomain()] = b
		resp.Results = append(resp.Results, &bundlev1.BatchSetFederatedBundleResponse_Result{Status: &types.Status{}, Bundle: b})
	}
	return resp, nil
}

func (f *fakeBundleAPI) has(td string, seq uint64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.federated[td]
	return ok && b.GetSequenceNumber() == seq
}

// serveFakeBundleAPI serves api on a unix socket and returns its path.
func serveFakeBundleAPI(t *testing.T, api bundlev1.BundleServer) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "strait-spiresync-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	path := filepath.Join(dir, "api.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	bundlev1.RegisterBundleServer(s, api)
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(s.Stop)
	return path
}

// testCA returns a self-signed CA certificate.
func testCA(t *testing.T, cn string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(time.Hour),
		BasicConstraintsValid: true,
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
