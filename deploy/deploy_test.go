// Tests of deploy/: every manifest applies to a real kube-apiserver, the
// controller's RBAC is enough for it to work, the kustomizations reference
// what exists, and the Grafana dashboard queries metrics that exist.
package deploy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	mcsclient "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned"
	"sigs.k8s.io/yaml"

	"github.com/strait-mesh/strait/federation"
	"github.com/strait-mesh/strait/federation/kube"
	"github.com/strait-mesh/strait/federation/kube/kubetest"
	"github.com/strait-mesh/strait/internal/etcdtest"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// TestManifestsApply applies every manifest under deploy/ (CRDs first) with
// server-side apply, then runs the MCS controller as the gateway's
// ServiceAccount: it must do its whole job with the RBAC of base/rbac.yaml.
func TestManifestsApply(t *testing.T) {
	etcd, cli := etcdtest.Start(t, 1)
	srv := kubetest.Start(t, kubetest.Options{EtcdURL: etcd.Endpoints()[0], Prefix: "/deploy-test"})
	objs, err := kubetest.ReadManifests(kubetest.Path(t, "deploy"))
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, o := range objs {
		kinds[o.Obj.GetKind()]++
	}
	t.Logf("%d objects: %v", len(objs), kinds)
	for _, k := range []string{"CustomResourceDefinition", "Namespace", "ClusterRole", "Deployment", "StatefulSet", "PodDisruptionBudget", "Service", "ConfigMap", "ServiceExport"} {
		if kinds[k] == 0 {
			t.Errorf("no %s under deploy/", k)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// A server-side dry run first: it must admit everything, CRDs and all.
	if err := kubetest.Apply(ctx, srv.Config, objs, kubetest.ApplyOptions{DryRun: true}); err != nil {
		// Custom resources cannot be dry-run before their CRD exists;
		// report only other failures.
		for _, line := range strings.Split(err.Error(), "\n") {
			if !strings.Contains(line, "ServiceExport") && !strings.Contains(line, "ServiceImport") && !strings.Contains(line, "namespaces \"") {
				t.Errorf("dry run: %s", line)
			}
		}
	}
	if err := kubetest.Apply(ctx, srv.Config, objs, kubetest.ApplyOptions{}); err != nil {
		t.Fatalf("apply: %v", err)
	}
	// Applying again changes nothing and fails nothing.
	if err := kubetest.Apply(ctx, srv.Config, objs, kubetest.ApplyOptions{}); err != nil {
		t.Fatalf("second apply: %v", err)
	}

	t.Run("controller with the gateway's RBAC", func(t *testing.T) {
		runControllerAsGateway(t, srv.Config, federation.NewStore(cli, federation.Keyspace{}))
	})
}

// runControllerAsGateway runs the controller of cluster west, impersonating
// the strait-gateway ServiceAccount, with leader election, and checks that
// it exports demo/hello (examples/west-hello.yaml) and imports a service
// another cluster exports.
func runControllerAsGateway(t *testing.T, admin *rest.Config, store *federation.Store) {
	cfg := rest.CopyConfig(admin)
	cfg.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:strait-system:strait-gateway",
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:strait-system", "system:authenticated"},
	}
	snaps := federation.NewStaticSource(federation.NewSnapshot(1, []federation.Record{
		{Message: &straitv1.Gateway{Cluster: "west", Id: "gw-1", Address: "192.0.2.1:15443", EgressAddress: "10.96.0.50:15444"}},
		{Message: &straitv1.Gateway{Cluster: "east", Id: "gw-1", Address: "192.0.2.2:15443", EgressAddress: "10.96.0.60:15444"}},
		{Message: &straitv1.Export{Cluster: "east", Namespace: "demo", Service: "ledger",
			Ports: []*straitv1.ServicePort{{Name: "grpc", Port: 9000, Protocol: straitv1.Protocol_PROTOCOL_TCP}}}},
	}))
	ctl, err := kube.NewController(kube.Config{
		Cluster: "west", RESTConfig: cfg, Store: store, Snapshots: snaps,
		LeaderElection: &kube.LeaderElection{Namespace: "strait-system", Name: "strait-kube-west", Identity: "test",
			LeaseDuration: 4 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: time.Second},
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ctl.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	kc := kubernetes.NewForConfigOrDie(admin)
	mc := mcsclient.NewForConfigOrDie(admin)
	eventually(t, "demo/hello exported with Valid=True", func(ctx context.Context) error {
		if _, err := store.GetExport(ctx, "west", "demo", "hello"); err != nil {
			return err
		}
		se, err := mc.MulticlusterV1alpha1().ServiceExports("demo").Get(ctx, "hello", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if !meta.IsStatusConditionTrue(se.Status.Conditions, "Valid") {
			return fmt.Errorf("conditions %+v", se.Status.Conditions)
		}
		return nil
	})
	eventually(t, "demo/ledger imported", func(ctx context.Context) error {
		si, err := mc.MulticlusterV1alpha1().ServiceImports("demo").Get(ctx, "ledger", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(si.Spec.IPs) != 1 || len(si.Status.Clusters) != 1 {
			return fmt.Errorf("service import %+v", si)
		}
		svc, err := kc.CoreV1().Services("demo").Get(ctx, kube.DerivedServiceName("ledger"), metav1.GetOptions{})
		if err != nil {
			return err
		}
		if svc.Spec.Type != corev1.ServiceTypeClusterIP {
			return fmt.Errorf("derived service type %s", svc.Spec.Type)
		}
		list, err := kc.DiscoveryV1().EndpointSlices("demo").List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc.Name})
		if err != nil {
			return err
		}
		if len(list.Items) != 1 || list.Items[0].Endpoints[0].Addresses[0] != "10.96.0.50" {
			return fmt.Errorf("endpoint slices %+v", list.Items)
		}
		return nil
	})
	if _, err := kc.CoordinationV1().Leases("strait-system").Get(context.Background(), "strait-kube-west", metav1.GetOptions{}); err != nil {
		t.Errorf("leader election lease: %v", err)
	}
}

// TestKustomizations checks that every resource a kustomization lists
// exists.
func TestKustomizations(t *testing.T) {
	root := kubetest.Path(t, "deploy")
	n := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.Name() != "kustomization.yaml" {
			return err
		}
		n++
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var k struct {
			APIVersion string   `json:"apiVersion"`
			Kind       string   `json:"kind"`
			Resources  []string `json:"resources"`
		}
		if err := yaml.UnmarshalStrict(data, &k, yaml.DisallowUnknownFields); err != nil {
			// Only resources are used: patches and transformers would
			// make the applied manifests differ from the files.
			return fmt.Errorf("%s: %w", path, err)
		}
		for _, r := range k.Resources {
			p := filepath.Join(filepath.Dir(path), r)
			st, err := os.Stat(p)
			switch {
			case err != nil:
				t.Errorf("%s: resource %s: %v", path, r, err)
			case st.IsDir():
				if _, err := os.Stat(filepath.Join(p, "kustomization.yaml")); err != nil {
					t.Errorf("%s: resource %s is a directory without kustomization.yaml", path, r)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 4 {
		t.Errorf("found %d kustomizations, want base, etcd and two overlays", n)
	}
}

// TestDashboardMetricsExist checks that every strait_ metric the Grafana
// dashboard queries is defined in the code.
func TestDashboardMetricsExist(t *testing.T) {
	data, err := os.ReadFile(kubetest.Path(t, "deploy/grafana/strait-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash map[string]any
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	known := definedMetrics(t)
	used := regexp.MustCompile(`strait_[a-z_]+`).FindAllString(string(data), -1)
	slices.Sort(used)
	used = slices.Compact(used)
	if len(used) < 20 {
		t.Errorf("the dashboard uses only %d metrics", len(used))
	}
	for _, m := range used {
		base := m
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			base = strings.TrimSuffix(base, suffix)
		}
		if !known[base] {
			t.Errorf("dashboard metric %s is not defined in gateway/, proxy/, federation/ or trust/", m)
		}
	}
}

// definedMetrics collects the metric names the code defines: full
// "strait_..." literals, and Namespace/Subsystem/Name triples.
func definedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	full := regexp.MustCompile(`"(strait_[a-z_]+)"`)
	sub := regexp.MustCompile(`Subsystem: *(?:"([a-z]+)"|sub)[^}]*?Name: *"([a-z_]+)"`)
	subConst := regexp.MustCompile(`ns, sub = "strait", "([a-z]+)"`)
	known := map[string]bool{}
	for _, dir := range []string{"gateway", "proxy", "federation", "trust"} {
		err := filepath.WalkDir(kubetest.Path(t, dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, m := range full.FindAllStringSubmatch(string(data), -1) {
				known[m[1]] = true
			}
			defaultSub := ""
			if m := subConst.FindStringSubmatch(string(data)); m != nil {
				defaultSub = m[1]
			}
			for _, m := range sub.FindAllStringSubmatch(string(data), -1) {
				s := m[1]
				if s == "" {
					s = defaultSub
				}
				known["strait_"+s+"_"+m[2]] = true
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return known
}

// eventually polls check until it returns nil or 30s pass.
func eventually(t *testing.T, what string, check func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		err := check(ctx)
		if err == nil {
			return
		}
		if ctx.Err() == nil || last == nil {
			last = err
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not within 30s: %v", what, last)
		case <-tick.C:
		}
	}
}

// TestInstallImagesBuiltHere checks that the install (base/ and etcd/)
// runs only images this repository builds without a registry: strait:dev
// (`make image`) and strait-etcd at the etcd version e2e/tools/go.mod pins
// (`make etcd-image`), so that offline nodes pull nothing. Helper images
// such as busybox are not allowed: strait does their jobs itself.
func TestInstallImagesBuiltHere(t *testing.T) {
	gomod, err := os.ReadFile(kubetest.Path(t, "e2e/tools/go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*go\.etcd\.io/etcd/server/v3 (v\S+)`).FindSubmatch(gomod)
	if m == nil {
		t.Fatal("e2e/tools/go.mod pins no go.etcd.io/etcd/server/v3")
	}
	allowed := map[string]bool{"strait:dev": true, "strait-etcd:" + string(m[1]): true}
	objs, err := kubetest.ReadManifests(kubetest.Path(t, "deploy/base"), kubetest.Path(t, "deploy/etcd"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, o := range objs {
		for _, list := range []string{"initContainers", "containers"} {
			ctrs, _, _ := unstructured.NestedSlice(o.Obj.Object, "spec", "template", "spec", list)
			for _, c := range ctrs {
				img, _ := c.(map[string]any)["image"].(string)
				n++
				if !allowed[img] {
					t.Errorf("%s: %s %s: image %q is not one the repository builds (%v)", o.File, o.Obj.GetKind(), o.Obj.GetName(), img, allowed)
				}
			}
		}
	}
	if n < 4 {
		t.Errorf("found %d containers in the install, want the gateway's, the injector's and etcd's", n)
	}
}
