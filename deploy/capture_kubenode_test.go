//go:build kubenode

package deploy_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/strait-mesh/strait/e2e/kubenode"
	"github.com/strait-mesh/strait/e2e/netns"
	"github.com/strait-mesh/strait/e2e/wait"
	"github.com/strait-mesh/strait/federation/kube/kubetest"
)

// captureDemo is the namespace of TestCaptureOnRealNode: a client-only
// proxy's config (and one with an upstream listener, for the pod without
// capture, whose proxy would otherwise have nothing to do), a web server
// without a sidecar behind a Service, and two injected client pods
// (kubeapp, kept running by a server on loopback), one with capture (the
// default) and one opted out.
const captureDemo = `apiVersion: v1
kind: Namespace
metadata: {name: demo, labels: {strait.io/inject: enabled}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: strait-federation, namespace: demo}
data: {etcdEndpoint: "http://strait-etcd-client.strait-system.svc.cluster.local:2379"}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: strait-proxy, namespace: demo}
data:
  proxy.yaml: |
    cluster: east
    namespace: demo
    serviceAccount: default
    etcd: {endpoints: ["@ETCD_ENDPOINT@"]}
    identity: {trustDomain: east.strait.local, caDir: /var/lib/strait/ca}
    admin: {listen: "0.0.0.0:15020"}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: strait-proxy-upstream, namespace: demo}
data:
  proxy.yaml: |
    cluster: east
    namespace: demo
    serviceAccount: default
    upstreams: ["hello.demo:8080=127.0.0.1:18080"]
    etcd: {endpoints: ["@ETCD_ENDPOINT@"]}
    identity: {trustDomain: east.strait.local, caDir: /var/lib/strait/ca}
    admin: {listen: "0.0.0.0:15020"}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: demo, labels: {app: web}, annotations: {strait.io/inject: "false"}}
spec:
  securityContext: {runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532}
  containers:
    - {name: web, image: strait.test/kubeapp:v1, imagePullPolicy: Never, command: [/kubeapp, serve, -listen, ":8080", -text, web]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: demo}
spec:
  selector: {app: web}
  ports: [{port: 8080, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: captured, namespace: demo}
spec:
  securityContext: {runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532}
  containers:
    - {name: app, image: strait.test/kubeapp:v1, imagePullPolicy: Never, command: [/kubeapp, serve, -listen, "127.0.0.1:9999"]}
---
apiVersion: v1
kind: Pod
metadata: {name: uncaptured, namespace: demo, annotations: {strait.io/capture: "false", strait.io/proxy-config: strait-proxy-upstream}}
spec:
  securityContext: {runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532}
  containers:
    - {name: app, image: strait.test/kubeapp:v1, imagePullPolicy: Never, command: [/kubeapp, serve, -listen, "127.0.0.1:9999"]}
`

// TestCaptureOnRealNode installs deploy/overlays/east on one real node
// (e2e/kubenode; kubectl apply -k, then injector-tls.sh, as the README
// says), waits for etcd and the injector, then proves transparent capture
// from Strait's
// distroless image: the injected init container of a pod without
// annotations installs the nftables rules (its log prints the table, with
// the proxy's group excluded) with NET_ADMIN only; an unmodified client in
// that pod resolves and fetches a Service of the cluster, and its proxy's
// metrics count the captured connection (passed through to the Service)
// and the captured DNS query (forwarded to CoreDNS); a pod annotated
// strait.io/capture: "false" reaches the same Service with nothing counted
// by its proxy.
//
//	go test -tags kubenode -count=1 -timeout 30m -run TestCaptureOnRealNode -v ./deploy/
func TestCaptureOnRealNode(t *testing.T) {
	netns.RequireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	bin, err := kubenode.Binaries(ctx)
	if err != nil {
		t.Fatal(err)
	}
	root := kubetest.Path(t, ".")
	dir := t.TempDir()
	straitTar, etcdTar := captureImage(ctx, t, root, dir), filepath.Join(dir, "etcd.tar")
	if out, err := exec.CommandContext(ctx, "make", "-C", root, "etcd-image", "ETCD_IMAGE_TAR="+etcdTar).CombinedOutput(); err != nil {
		t.Fatalf("make etcd-image: %v\n%s", err, out)
	}
	appTar, err := kubenode.BuildGoImage(ctx, dir, kubenode.GoImage{Package: "./e2e/kubenode/cmd/kubeapp", Ref: "strait.test/kubeapp:v1", User: "65532:65532"})
	if err != nil {
		t.Fatal(err)
	}
	suffix := make([]byte, 3)
	_, _ = rand.Read(suffix)
	topo := netns.BuildT(t, netns.Spec{Prefix: "sc-" + hex.EncodeToString(suffix),
		Clusters: []netns.ClusterSpec{{Name: "east", Hosts: []string{"node"}}}})
	node := kubenode.StartT(t, kubenode.Config{Host: topo.Host("east", "node"), BinDir: bin, Images: []string{straitTar, etcdTar, appTar}})
	kubectl := func(stdin []byte, args ...string) string {
		t.Helper()
		out, err := node.Kubectl(ctx, stdin, args...)
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}

	kubectl(nil, "apply", "--server-side", "-k", filepath.Join(root, "deploy/overlays/east"))
	tls := node.Host().Command(ctx, filepath.Join(root, "deploy/injector-tls.sh"), "--kubeconfig", node.Kubeconfig())
	tls.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "HOME="+dir)
	if out, err := tls.CombinedOutput(); err != nil {
		t.Fatalf("injector-tls.sh: %v\n%s", err, out)
	}
	for _, w := range []string{"statefulset/strait-etcd", "deploy/strait-injector"} {
		if out, err := node.Kubectl(ctx, nil, "-n", "strait-system", "rollout", "status", w, "--timeout=300s"); err != nil {
			t.Fatalf("%s: %v\n%s\n%s", w, err, out, node.PodReport(ctx, "strait-system", ""))
		}
	}
	kubectl([]byte(captureDemo), "apply", "-f", "-")
	for _, p := range []string{"web", "captured", "uncaptured"} {
		if out, err := node.Kubectl(ctx, nil, "-n", "demo", "wait", "--for=condition=Ready", "pod/"+p, "--timeout=300s"); err != nil {
			t.Fatalf("pod %s not ready: %v\n%s\n%s", p, err, out, node.PodReport(ctx, "demo", ""))
		}
	}

	// The init containers: the rules, read back from the kernel, with the
	// proxy's group excluded; exactly NET_ADMIN (and CHOWN for the CA).
	initLog := kubectl(nil, "-n", "demo", "logs", "captured", "-c", "strait-init")
	t.Logf("strait-init of the captured pod:\n%s", initLog)
	for _, want := range []string{"capture rules installed:", "table ip strait {", "meta skgid 1337 return",
		"udp dport 53 redirect to :15053", "meta l4proto tcp redirect to :15001"} {
		if !strings.Contains(initLog, want) {
			t.Errorf("strait-init printed no %q", want)
		}
	}
	caps := kubectl(nil, "-n", "demo", "get", "pod", "captured", "-o", "jsonpath={.spec.initContainers[0].securityContext.capabilities.add}")
	if caps != `["NET_ADMIN","CHOWN"]` {
		t.Errorf("init container capabilities %s, want NET_ADMIN and CHOWN", caps)
	}
	if l := kubectl(nil, "-n", "demo", "logs", "uncaptured", "-c", "strait-init"); strings.Contains(l, "capture rules") {
		t.Errorf("strait-init of the opted-out pod installed rules:\n%s", l)
	}

	const name = "web.demo.svc.cluster.local"
	for _, tt := range []struct {
		pod      string
		captured bool
	}{{"captured", true}, {"uncaptured", false}} {
		out := kubectl(nil, "-n", "demo", "exec", tt.pod, "-c", "app", "--", "/kubeapp", "check",
			"-lookup", name, "-get", "http://"+name+":8080/", "-timeout", "60s")
		if !strings.Contains(out, ": 200 web from web") {
			t.Errorf("%s: the client got %q, want web's answer", tt.pod, strings.TrimSpace(out))
		}
		// The proxy counts a passed-through connection when it ends (the
		// client's process has exited): poll its metrics, from the node.
		podIP := kubectl(nil, "-n", "demo", "get", "pod", tt.pod, "-o", "jsonpath={.status.podIP}")
		var passed, forwarded float64
		err := wait.Until(ctx, 200*time.Millisecond, func(ctx context.Context) (bool, error) {
			out, err := node.Host().Command(ctx, "curl", "-sS", "--max-time", "5", "http://"+podIP+":15020/metrics").Output()
			if err != nil {
				return false, wait.Retry(err)
			}
			m := promValues(string(out))
			passed = m[`strait_proxy_connections_total{direction="passthrough",result="ok"}`]
			forwarded = m[`strait_proxy_dns_queries_total{result="forwarded"}`]
			return !tt.captured || passed >= 1 && forwarded >= 1, nil
		})
		if err != nil {
			t.Errorf("%s: the proxy counted %v passed-through connections and %v forwarded DNS queries, want both: %v", tt.pod, passed, forwarded, err)
		}
		if !tt.captured && (passed != 0 || forwarded != 0) {
			t.Errorf("%s: the proxy of an opted-out pod counted %v passed-through connections and %v forwarded queries", tt.pod, passed, forwarded)
		}
		t.Logf("%s: %s; proxy: %v passed through, %v DNS queries forwarded", tt.pod, strings.TrimSpace(out), passed, forwarded)
	}
}

// captureImage builds Strait's image as `make image` does, but from a
// directory of its own: make image empties the shared bin/linux first, so
// that a concurrent run (another test building the image) can leave an
// image without strait-proxy.
func captureImage(ctx context.Context, t *testing.T, root, dir string) string {
	t.Helper()
	linux := filepath.Join(dir, "linux")
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", linux+"/", "./cmd/...")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/...: %v\n%s", err, out)
	}
	tar := filepath.Join(dir, "strait.tar")
	args := []string{"run", "./internal/ociimage/cmd/ociimage", "-ref", "strait:dev", "-o", tar, "-user", "65532:65532", "-entrypoint", "/usr/local/bin/strait"}
	ents, err := os.ReadDir(linux)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		args = append(args, filepath.Join(linux, e.Name())+"=/usr/local/bin/"+e.Name())
	}
	img := exec.CommandContext(ctx, "go", args...)
	img.Dir = root
	if out, err := img.CombinedOutput(); err != nil {
		t.Fatalf("ociimage: %v\n%s", err, out)
	}
	return tar
}

// promValues reads the samples of a Prometheus text exposition, keyed by
// name and labels as written.
func promValues(text string) map[string]float64 {
	m := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[sp+1:], 64); err == nil {
			m[line[:sp]] = v
		}
	}
	return m
}
