//go:build kubenode

// The node tests need root, the Debian packages containerd, runc and
// containernetworking-plugins, and the binaries of e2e/kubetools (built on
// first use). They run with `make e2e-kube`:
//
//	go test -tags kubenode -count=1 -timeout 40m -v ./e2e/kubenode/
package kubenode_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/strait-mesh/strait/e2e/kubenode"
	"github.com/strait-mesh/strait/e2e/netns"
	"github.com/strait-mesh/strait/e2e/wait"
)

const appImage = "strait.test/kubenode/kubeapp:v1"

const webManifest = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: default
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: ` + appImage + `
        imagePullPolicy: Never
        args: [serve, -listen, ":8080", -text, "hello from web"]
        ports: [{containerPort: 8080}]
        readinessProbe:
          httpGet: {path: /, port: 8080}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: default
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
`

// TestNodeRunsPods starts a real node and proves that it runs pods: a
// Deployment behind a Service becomes available, and a client pod resolves
// the Service's short name through the pod's resolv.conf and CoreDNS to
// the ClusterIP and gets an answer from a web pod through kube-proxy's
// rules. The host's kernel settings never change, and after Close nothing
// of the node is left on the host.
func TestNodeRunsPods(t *testing.T) {
	netns.RequireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 35*time.Minute)
	defer cancel()

	buildStart := time.Now()
	bin, err := kubenode.Binaries(ctx)
	if err != nil {
		t.Fatalf("building binaries: %v", err)
	}
	t.Logf("binaries ready in %s", time.Since(buildStart).Round(time.Millisecond))
	sysctlsBefore := readSysctls(t)

	topo := netns.BuildT(t, netns.Spec{Prefix: "sk-" + randomSuffix(),
		Clusters: []netns.ClusterSpec{{Name: "east", Hosts: []string{"node"}}}})
	imgDir := t.TempDir()
	app, err := kubenode.BuildGoImage(ctx, imgDir, kubenode.GoImage{Package: "./e2e/kubenode/cmd/kubeapp", Ref: appImage, User: "65532:65532"})
	if err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	node, err := kubenode.Start(ctx, kubenode.Config{Host: topo.Host("east", "node"), BinDir: bin, Images: []string{app}})
	if err != nil {
		t.Fatalf("starting node: %v", err)
	}
	t.Logf("node Ready with CoreDNS in %s: %v", time.Since(start).Round(time.Millisecond), node.Timings())
	closed := false
	defer func() {
		if !closed {
			_ = node.Close()
		}
	}()
	cgroupRoots := nodeCgroups(t)

	if _, err := node.Kubectl(ctx, []byte(webManifest), "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	client := node.Client()
	deployStart := time.Now()
	err = wait.Until(ctx, 100*time.Millisecond, func(ctx context.Context) (bool, error) {
		d, err := client.AppsV1().Deployments("default").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return false, wait.Retry(err)
		}
		return d.Status.AvailableReplicas == 2, nil
	})
	if err != nil {
		t.Fatalf("web deployment not available: %v", err)
	}
	t.Logf("web deployment (2 replicas) available in %s", time.Since(deployStart).Round(time.Millisecond))
	svc, err := client.CoreV1().Services("default").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}

	logs := runToCompletion(ctx, t, node, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "client", Namespace: "default"},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{
				Name: "client", Image: appImage, ImagePullPolicy: corev1.PullNever,
				Args: []string{"check", "-lookup", "web.default.svc.cluster.local", "-get", "http://web/", "-timeout", "60s"},
			}},
		},
	}, "")
	wantLookup := "lookup web.default.svc.cluster.local: " + svc.Spec.ClusterIP + " "
	if !strings.Contains(string(logs), wantLookup) {
		t.Errorf("client pod did not resolve the Service to its ClusterIP: want %q in its output", wantLookup)
	}
	if !strings.Contains(string(logs), "get http://web/: 200 hello from web from web-") {
		t.Errorf("client pod did not reach a web pod through the Service")
	}

	// A claim without a class binds to one of the node's local volumes,
	// and a non-root pod writes there (as etcd's StatefulSet in deploy/
	// needs).
	claim := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "data", Namespace: "default"},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("100Mi")}},
		},
	}
	if _, err := client.CoreV1().PersistentVolumeClaims("default").Create(ctx, claim, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	runToCompletion(ctx, t, node, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "writer", Namespace: "default"},
		Spec: corev1.PodSpec{
			RestartPolicy:   corev1.RestartPolicyNever,
			SecurityContext: &corev1.PodSecurityContext{RunAsUser: ptr(int64(65532)), RunAsGroup: ptr(int64(65532))},
			Containers: []corev1.Container{{
				Name: "writer", Image: appImage, ImagePullPolicy: corev1.PullNever,
				Args:         []string{"write", "-file", "/data/hello", "-text", "persisted"},
				VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}},
			}},
			Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}}},
		},
	}, "wrote /data/hello: persisted")

	mem, err := node.Memory()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("memory: total %d MiB; components %s; shims %d MiB; pods %d MiB",
		mem.Total()>>20, mib(mem.Components), mem.Shims>>20, mem.Pods>>20)

	// The kubelet's kernel settings are faked in the node's mount namespace:
	// the host's never change.
	if during := readSysctls(t); fmt.Sprint(during) != fmt.Sprint(sysctlsBefore) {
		t.Errorf("the running node changed the host's kernel settings: before %v, now %v", sysctlsBefore, during)
	}

	stateDir := filepath.Dir(node.Kubeconfig())
	stopStart := time.Now()
	closed = true
	if err := node.Close(); err != nil {
		t.Fatalf("closing node: %v", err)
	}
	t.Logf("node closed in %s", time.Since(stopStart).Round(time.Millisecond))

	// Every host change is undone.
	if _, err := os.Stat(stateDir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("state directory %s left behind (%v)", stateDir, err)
	}
	for _, c := range cgroupRoots {
		if _, err := os.Stat(c); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("cgroup %s left behind (%v)", c, err)
		}
	}
	if after := readSysctls(t); fmt.Sprint(after) != fmt.Sprint(sysctlsBefore) {
		t.Errorf("kernel settings changed: before %v, after %v", sysctlsBefore, after)
	}
}

// randomSuffix returns 6 hex digits for a topology prefix.
func randomSuffix() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// runToCompletion creates pod, waits until it has finished, fails the test
// unless it succeeded and logged want, and returns its log.
func runToCompletion(ctx context.Context, t *testing.T, node *kubenode.Node, pod *corev1.Pod, want string) []byte {
	t.Helper()
	pods := node.Client().CoreV1().Pods(pod.Namespace)
	if _, err := pods.Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var phase corev1.PodPhase
	var status string
	err := wait.Until(ctx, 100*time.Millisecond, func(ctx context.Context) (bool, error) {
		p, err := pods.Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return false, wait.Retry(err)
		}
		phase = p.Status.Phase
		status = fmt.Sprintf("%+v", p.Status.ContainerStatuses)
		return phase == corev1.PodSucceeded || phase == corev1.PodFailed, nil
	})
	if err != nil {
		t.Fatalf("pod %s did not finish (%s, %s): %v", pod.Name, phase, status, err)
	}
	logs, err := pods.GetLogs(pod.Name, &corev1.PodLogOptions{}).DoRaw(ctx)
	if err != nil {
		t.Fatalf("pod %s logs: %v", pod.Name, err)
	}
	t.Logf("pod %s %s:\n%s", pod.Name, phase, firstLines(logs, 5))
	if phase != corev1.PodSucceeded {
		t.Fatalf("pod %s %s", pod.Name, phase)
	}
	if !strings.Contains(string(logs), want) {
		t.Fatalf("pod %s did not log %q", pod.Name, want)
	}
	return logs
}

func firstLines(b []byte, n int) string {
	lines := strings.SplitN(string(b), "\n", n+1)
	if len(lines) > n {
		lines = append(lines[:n], "…")
	}
	return strings.Join(lines, "\n")
}

func ptr[T any](v T) *T { return &v }

var watchedSysctls = []string{"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
	"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes", "net/ipv4/ip_forward"}

func readSysctls(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, k := range watchedSysctls {
		b, err := os.ReadFile("/proc/sys/" + k)
		if err != nil {
			t.Fatal(err)
		}
		out[k] = strings.TrimSpace(string(b))
	}
	return out
}

// nodeCgroups returns the node cgroup roots that exist now.
func nodeCgroups(t *testing.T) []string {
	t.Helper()
	dirs, err := filepath.Glob("/sys/fs/cgroup/*/strait-kubenode-*")
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) == 0 {
		t.Fatal("no node cgroup found")
	}
	return dirs
}

func mib(m map[string]uint64) string {
	var parts []string
	for k, v := range m {
		parts = append(parts, fmt.Sprintf("%s %d", k, v>>20))
	}
	return strings.Join(parts, ", ")
}
