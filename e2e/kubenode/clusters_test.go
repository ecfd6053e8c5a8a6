//go:build kubenode

package kubenode_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/strait-mesh/strait/e2e/kubenode"
	"github.com/strait-mesh/strait/e2e/netns"
	"github.com/strait-mesh/strait/e2e/wait"
	"github.com/strait-mesh/strait/e2e/wan"
)

// TestThreeClustersAcrossWAN starts east, west and central at once, each a
// real node in its own cluster of one topology, and proves that a pod in
// east reaches a Service of west only through a WAN link in front of west's
// NodePort (the way gateways will), over TCP and UDP (a UDP NodePort, as
// the gateways' QUIC ingress), and not directly. It reports the start
// time and the memory of the three clusters.
func TestThreeClustersAcrossWAN(t *testing.T) {
	netns.RequireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 35*time.Minute)
	defer cancel()
	bin, err := kubenode.Binaries(ctx)
	if err != nil {
		t.Fatalf("building binaries: %v", err)
	}
	suffix := make([]byte, 3)
	_, _ = rand.Read(suffix)
	names := []string{"east", "west", "central"}
	spec := netns.Spec{Prefix: "sk-" + hex.EncodeToString(suffix)}
	for _, n := range names {
		spec.Clusters = append(spec.Clusters, netns.ClusterSpec{Name: n, Hosts: []string{"node"}})
	}
	topo := netns.BuildT(t, spec)
	app, err := kubenode.BuildGoImage(ctx, t.TempDir(), kubenode.GoImage{Package: "./e2e/kubenode/cmd/kubeapp", Ref: appImage, User: "65532:65532"})
	if err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	nodes := make(map[string]*kubenode.Node)
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, len(names))
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := kubenode.Start(ctx, kubenode.Config{
				Host:        topo.Host(name, "node"),
				BinDir:      bin,
				Images:      []string{app},
				PodCIDR:     netip.MustParsePrefix(fmt.Sprintf("10.244.%d.0/24", i+1)),
				ServiceCIDR: netip.MustParsePrefix(fmt.Sprintf("10.96.%d.0/24", i+1)),
			})
			if err != nil {
				errs <- err
				return
			}
			mu.Lock()
			nodes[name] = n
			mu.Unlock()
		}()
	}
	wg.Wait()
	close(errs)
	t.Cleanup(func() {
		for _, n := range nodes {
			if err := n.Close(); err != nil {
				t.Errorf("closing %s: %v", n.Name(), err)
			}
		}
	})
	for err := range errs {
		t.Fatalf("starting a node: %v", err)
	}
	t.Logf("three clusters Ready with CoreDNS in %s", time.Since(start).Round(time.Millisecond))

	west := nodes["west"]
	// West's web pods also echo UDP, behind a UDP NodePort (as the
	// gateways' QUIC ingress is).
	manifest := strings.ReplaceAll(webManifest, "ports: [{port: 80, targetPort: 8080}]",
		"type: NodePort\n  ports: [{name: http, port: 80, targetPort: 8080}, {name: udp, port: 9000, protocol: UDP, targetPort: 9000}]")
	manifest = strings.ReplaceAll(manifest, `-text, "hello from web"]`, `-text, "hello from west", -udp, ":9000"]`)
	if _, err := west.Kubectl(ctx, []byte(manifest), "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	err = wait.Until(ctx, 100*time.Millisecond, func(ctx context.Context) (bool, error) {
		d, err := west.Client().AppsV1().Deployments("default").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return false, wait.Retry(err)
		}
		return d.Status.AvailableReplicas == 2, nil
	})
	if err != nil {
		t.Fatalf("west's web deployment not available: %v", err)
	}
	svc, err := west.Client().CoreV1().Services("default").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nodePort := int(svc.Spec.Ports[0].NodePort)
	link, err := topo.StartLink(ctx, wan.LinkConfig{Listen: ":8080",
		Backends: []string{west.Host().AddrPort(nodePort)}, Delay: 15 * time.Millisecond, DisableUDP: true})
	if err != nil {
		t.Fatal(err)
	}
	udpLink, err := topo.StartLink(ctx, wan.LinkConfig{Listen: ":9000",
		Backends: []string{west.Host().AddrPort(int(svc.Spec.Ports[1].NodePort))}, Delay: 15 * time.Millisecond, DisableTCP: true})
	if err != nil {
		t.Fatal(err)
	}

	east := nodes["east"]
	runToCompletion(ctx, t, east, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "across-wan", Namespace: "default"},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{
				Name: "client", Image: appImage, ImagePullPolicy: corev1.PullNever,
				Args: []string{"check", "-get", "http://" + link.Addr().String() + "/", "-udp", udpLink.Addr().String(), "-timeout", "60s"},
			}},
		},
	}, "hello from west from web-")
	// West's node is not reachable from east except through the WAN.
	direct := "http://" + west.Host().AddrPort(nodePort) + "/"
	runToFailure(ctx, t, east, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "direct", Namespace: "default"},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{
				Name: "client", Image: appImage, ImagePullPolicy: corev1.PullNever,
				Args: []string{"check", "-get", direct, "-timeout", "3s"},
			}},
		},
	})

	var total uint64
	var parts []string
	for _, name := range names {
		m, err := nodes[name].Memory()
		if err != nil {
			t.Fatal(err)
		}
		total += m.Total()
		parts = append(parts, name+" "+strconv.FormatUint(m.Total()>>20, 10)+" MiB")
	}
	t.Logf("memory of the three clusters: %d MiB (%s)", total>>20, strings.Join(parts, ", "))
}

// runToFailure creates pod and waits until it has failed; a success fails
// the test.
func runToFailure(ctx context.Context, t *testing.T, node *kubenode.Node, pod *corev1.Pod) {
	t.Helper()
	pods := node.Client().CoreV1().Pods(pod.Namespace)
	if _, err := pods.Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var phase corev1.PodPhase
	err := wait.Until(ctx, 100*time.Millisecond, func(ctx context.Context) (bool, error) {
		p, err := pods.Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return false, wait.Retry(err)
		}
		phase = p.Status.Phase
		return phase == corev1.PodSucceeded || phase == corev1.PodFailed, nil
	})
	if err != nil {
		t.Fatalf("pod %s did not finish: %v", pod.Name, err)
	}
	if phase != corev1.PodFailed {
		logs, _ := pods.GetLogs(pod.Name, &corev1.PodLogOptions{}).DoRaw(ctx)
		t.Fatalf("pod %s %s, want Failed:\n%s", pod.Name, phase, logs)
	}
}
