//go:build kubenode

package deploy_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/strait-mesh/strait/e2e/kubenode"
	"github.com/strait-mesh/strait/e2e/netns"
	"github.com/strait-mesh/strait/e2e/wait"
	"github.com/strait-mesh/strait/federation/kube/kubetest"
)

// TestInstallOnRealNode installs deploy/overlays/east on one real node
// (e2e/kubenode: kubelet, containerd, CoreDNS; images from tarballs, nothing
// pulled) exactly as deploy/README.md says (kubectl apply -k, then
// injector-tls.sh), waits for etcd, the gateways and the injector, then
// creates a pod in a namespace labelled strait.io/inject=enabled and checks
// that the kubelet runs it with the injected proxy and init container.
//
//	go test -tags kubenode -count=1 -timeout 30m -run TestInstallOnRealNode -v ./deploy/
func TestInstallOnRealNode(t *testing.T) {
	netns.RequireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	bin, err := kubenode.Binaries(ctx)
	if err != nil {
		t.Fatal(err)
	}
	root := kubetest.Path(t, ".")
	dir := t.TempDir()
	straitTar, etcdTar := filepath.Join(dir, "strait.tar"), filepath.Join(dir, "etcd.tar")
	if out, err := exec.CommandContext(ctx, "make", "-C", root, "image", "etcd-image",
		"IMAGE=strait:dev", "IMAGE_TAR="+straitTar, "ETCD_IMAGE_TAR="+etcdTar).CombinedOutput(); err != nil {
		t.Fatalf("make image etcd-image: %v\n%s", err, out)
	}
	suffix := make([]byte, 3)
	_, _ = rand.Read(suffix)
	topo := netns.BuildT(t, netns.Spec{Prefix: "sd-" + hex.EncodeToString(suffix),
		Clusters: []netns.ClusterSpec{{Name: "east", Hosts: []string{"node"}}}})
	node := kubenode.StartT(t, kubenode.Config{Host: topo.Host("east", "node"), BinDir: bin, Images: []string{straitTar, etcdTar}})

	if out, err := node.Kubectl(ctx, nil, "apply", "--server-side", "-k", filepath.Join(root, "deploy/overlays/east")); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	tls := node.Host().Command(ctx, filepath.Join(root, "deploy/injector-tls.sh"), "--kubeconfig", node.Kubeconfig())
	tls.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "HOME="+dir)
	if out, err := tls.CombinedOutput(); err != nil {
		t.Fatalf("injector-tls.sh: %v\n%s", err, out)
	}
	for _, w := range []string{"statefulset/strait-etcd", "deploy/strait-injector", "deploy/strait-gateway"} {
		start := time.Now()
		if out, err := node.Kubectl(ctx, nil, "-n", "strait-system", "rollout", "status", w, "--timeout=300s"); err != nil {
			t.Fatalf("%s: %v\n%s\n%s", w, err, out, node.PodReport(ctx, "strait-system", ""))
		}
		t.Logf("%s rolled out in %s", w, time.Since(start).Round(time.Millisecond))
	}

	demo := `apiVersion: v1
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
    service: app
    serviceAccount: default
    app: "127.0.0.1:8080"
    ports: [{name: http, port: 8080}]
    etcd: {endpoints: ["@ETCD_ENDPOINT@"]}
    identity: {trustDomain: east.strait.local, caDir: /var/lib/strait/ca}
    inbound: {listen: "0.0.0.0:15006", advertise: "@POD_IP@:15006"}
    admin: {listen: "0.0.0.0:15020"}
---
apiVersion: v1
kind: Pod
metadata: {name: app, namespace: demo}
spec:
  securityContext: {runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532}
  containers:
    - name: app
      image: strait:dev
      imagePullPolicy: Never
      args: ["demo", "http", "--listen", "127.0.0.1:8080", "--cluster", "east"]
`
	if out, err := node.Kubectl(ctx, []byte(demo), "apply", "-f", "-"); err != nil {
		t.Fatalf("demo: %v\n%s", err, out)
	}
	client := node.Client()
	err = wait.Until(ctx, 200*time.Millisecond, func(ctx context.Context) (bool, error) {
		p, err := client.CoreV1().Pods("demo").Get(ctx, "app", metav1.GetOptions{})
		if err != nil {
			return false, wait.Retry(err)
		}
		if len(p.Spec.Containers) != 2 || p.Spec.Containers[1].Name != "strait-proxy" || len(p.Spec.InitContainers) != 1 {
			t.Fatalf("pod not injected: containers %d, init containers %d", len(p.Spec.Containers), len(p.Spec.InitContainers))
		}
		for _, c := range p.Status.ContainerStatuses {
			if !c.Ready {
				return false, nil
			}
		}
		return len(p.Status.ContainerStatuses) == 2, nil
	})
	if err != nil {
		t.Fatalf("injected pod not ready: %v\n%s", err, node.PodReport(ctx, "demo", ""))
	}
	out, _ := node.Kubectl(ctx, nil, "-n", "demo", "logs", "app", "-c", "strait-init")
	t.Logf("injected pod ready; strait-init: %s", strings.TrimSpace(string(out)))
}
