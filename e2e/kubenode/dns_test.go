//go:build kubenode

package kubenode_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/strait-mesh/strait/e2e/kubenode"
	"github.com/strait-mesh/strait/e2e/netns"
)

const serviceImport = `apiVersion: v1
kind: Namespace
metadata:
  name: demo
---
apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceImport
metadata:
  name: hello
  namespace: demo
spec:
  type: ClusterSetIP
  ips: [10.96.0.123]
  ports:
  - {name: http, port: 8080, protocol: TCP}
`

// TestClustersetDNS runs CoreDNS with the configuration deploy/README.md
// gives MCS users (MulticlusterCorefile, with the MCS CRDs of deploy/base)
// and proves that an unmodified pod resolves
// hello.demo.svc.clusterset.local to the ServiceImport's IP, while
// cluster.local names still resolve.
func TestClustersetDNS(t *testing.T) {
	netns.RequireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 35*time.Minute)
	defer cancel()
	bin, err := kubenode.Binaries(ctx)
	if err != nil {
		t.Fatalf("building binaries: %v", err)
	}
	topo := netns.BuildT(t, netns.Spec{Prefix: "sk-dns" + randomSuffix(),
		Clusters: []netns.ClusterSpec{{Name: "east", Hosts: []string{"node"}}}})
	app, err := kubenode.BuildGoImage(ctx, t.TempDir(), kubenode.GoImage{Package: "./e2e/kubenode/cmd/kubeapp", Ref: appImage, User: "65532:65532"})
	if err != nil {
		t.Fatal(err)
	}
	crds, err := filepath.Abs("../../deploy/base/crds")
	if err != nil {
		t.Fatal(err)
	}
	node := kubenode.StartT(t, kubenode.Config{Host: topo.Host("east", "node"), BinDir: bin, Images: []string{app},
		Corefile: kubenode.MulticlusterCorefile(kubenode.DefaultClusterDomain), Manifests: []string{crds}})
	if _, err := node.Kubectl(ctx, []byte(serviceImport), "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	runToCompletion(ctx, t, node, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "resolver", Namespace: "demo"},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{
				Name: "resolver", Image: appImage, ImagePullPolicy: corev1.PullNever,
				Args: []string{"check", "-lookup", "hello.demo.svc.clusterset.local", "-timeout", "30s"},
			}},
		},
	}, "lookup hello.demo.svc.clusterset.local: 10.96.0.123 ")
	runToCompletion(ctx, t, node, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "resolver-local", Namespace: "demo"},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{
				Name: "resolver", Image: appImage, ImagePullPolicy: corev1.PullNever,
				Args: []string{"check", "-lookup", "kubernetes.default.svc.cluster.local", "-timeout", "30s"},
			}},
		},
	}, "lookup kubernetes.default.svc.cluster.local: 10.96.0.1 ")
}
