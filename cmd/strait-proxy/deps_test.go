package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/strait-mesh/strait/internal/proxycmd/buildflags"
)

// TestDependencies keeps the sidecar binary small: built as make build and
// deploy/Dockerfile build it (build.flags: tags grpcnotrace and straitetcdlite), it links none of the
// packages that made the one strait binary 97 MB, nor the ones whose
// reflection keeps every exported method of the binary alive, nor etcd's
// Go client (internal/etcdlite replaces it), nor the nftables code of the
// capture rules (strait-init's).
func TestDependencies(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	flags, err := buildflags.Read("build.flags")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(goBin, append(append([]string{"list", "-deps"}, flags...), ".")...).CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	// The tags select code that no other build compiles (federation over
	// internal/etcdlite): it must compile.
	bin := filepath.Join(t.TempDir(), "strait-proxy")
	if b, err := exec.Command(goBin, append(append([]string{"build"}, flags...), "-o", bin, ".")...).CombinedOutput(); err != nil {
		t.Fatalf("go build with build.flags: %v\n%s", err, b)
	}
	// A name that ends in "/" forbids a tree, any other the one package.
	forbidden := []string{
		"go.etcd.io/etcd/server/", // the embedded etcd server
		// the etcd client, its logger and etcd's generated messages (with
		// the annotations they import): federation uses internal/etcdlite
		// (tag straitetcdlite)
		"go.etcd.io/etcd/api/v3/etcdserverpb",
		"github.com/grpc-ecosystem/",
		"google.golang.org/genproto/googleapis/api/",
		"go.etcd.io/etcd/client/v3",
		"go.etcd.io/etcd/client/v3/",
		"go.etcd.io/etcd/client/pkg/",
		"go.uber.org/zap",
		"go.uber.org/zap/",
		"k8s.io/", // the Kubernetes client (sigs.k8s.io/yaml is allowed)
		"sigs.k8s.io/mcs-api/",
		"github.com/spiffe/spire-api-sdk/",      // spire-sync
		"github.com/quic-go/",                   // the gateway's QUIC
		"github.com/strait-mesh/strait/gateway", // its tunnel codec (proto only) is allowed
		"github.com/strait-mesh/strait/federation/embedded",
		"github.com/strait-mesh/strait/federation/kube",
		"github.com/strait-mesh/strait/internal/devcluster",
		"github.com/spf13/cobra",
		"golang.org/x/net/trace", // grpc without grpcnotrace
		"text/template",          // dynamic method calls: no method is dead code
		"html/template",
		"net/http/pprof",
		// the capture rules' code, which only the init container runs
		// (strait-init)
		"github.com/google/nftables",
		"github.com/google/nftables/",
		"github.com/mdlayher/",
		"github.com/strait-mesh/strait/proxy/capture/nft",
		"github.com/strait-mesh/strait/internal/proxycmd/initcmd",
	}
	deps := strings.Fields(string(out))
	if len(deps) < 100 {
		t.Fatalf("go list gave %d packages, want the whole graph", len(deps))
	}
	for _, dep := range deps {
		for _, f := range forbidden {
			if dep == f || strings.HasSuffix(f, "/") && strings.HasPrefix(dep, f) {
				t.Errorf("strait-proxy links %s", dep)
			}
		}
	}
}

// TestBuildFlags checks that every build of strait-proxy that ships (make
// build, make image, deploy/Dockerfile) takes its flags from build.flags,
// the file that TestFootprint builds the binary it measures with.
func TestBuildFlags(t *testing.T) {
	if _, err := buildflags.Read("build.flags"); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		file, uses string
		builds     int // the lines that build ./cmd/strait-proxy
	}{
		{"../../Makefile", "$(PROXY_BUILD_FLAGS)", 2},
		{"../../deploy/Dockerfile", "cmd/strait-proxy/build.flags", 1},
	} {
		data, err := os.ReadFile(tt.file)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(string(data), "\n")
		n := 0
		for i := 0; i < len(lines); i++ {
			line, first := lines[i], i+1
			for strings.HasSuffix(line, "\\") && i+1 < len(lines) { // a command continued
				i++
				line = strings.TrimSuffix(line, "\\") + lines[i]
			}
			if !strings.Contains(line, " build ") || !strings.Contains(line, "./cmd/strait-proxy") {
				continue
			}
			n++
			if !strings.Contains(line, tt.uses) {
				t.Errorf("%s:%d builds strait-proxy without %s: %s", tt.file, first, tt.uses, strings.TrimSpace(line))
			}
		}
		if n != tt.builds {
			t.Errorf("%s has %d lines that build strait-proxy, want %d", tt.file, n, tt.builds)
		}
	}
}

// TestFederationOverEtcdLite runs internal/etcdclient's test of the same
// name, which builds only with build.flags' tags: federation (cache,
// registrar, store) over etcdlite against a real etcd that it SIGKILLs and
// restarts, as strait-proxy runs it. No other build compiles that code.
func TestFederationOverEtcdLite(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a real etcd")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	flags, err := buildflags.Read("build.flags")
	if err != nil {
		t.Fatal(err)
	}
	var tags []string
	for _, f := range flags {
		if strings.HasPrefix(f, "-tags=") {
			tags = append(tags, f)
		}
	}
	if len(tags) == 0 {
		t.Fatal("build.flags sets no tags")
	}
	args := append(append([]string{"test", "-count=1"}, tags...), "-run", "^TestFederationOverEtcdLite$", "-v",
		"github.com/strait-mesh/strait/internal/etcdclient")
	out, err := exec.Command(goBin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	if !strings.Contains(string(out), "--- PASS: TestFederationOverEtcdLite") {
		t.Fatalf("go %s ran no TestFederationOverEtcdLite:\n%s", strings.Join(args, " "), out)
	}
}
