package kube_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	mcsv1alpha1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"
	mcsclient "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned"

	"github.com/strait-mesh/strait/federation"
	"github.com/strait-mesh/strait/federation/kube"
	"github.com/strait-mesh/strait/federation/kube/kubetest"
	"github.com/strait-mesh/strait/internal/etcdtest"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// cluster is one test cluster: an API server and its controller's metrics.
type cluster struct {
	name    string
	kube    kubernetes.Interface
	mcs     mcsclient.Interface
	metrics *prometheus.Registry
}

// federationEnv is two clusters on real API servers, one etcd for both the
// API servers and the federation, and a controller per cluster.
type federationEnv struct {
	store      *federation.Store
	east, west *cluster
	egressEast string
	egressWest string
}

const waitTimeout = 30 * time.Second

func startEnv(t *testing.T) *federationEnv {
	t.Helper()
	etcd, cli := etcdtest.Start(t, 1)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ks := federation.Keyspace{}
	cache, err := federation.NewCache(federation.CacheConfig{Sources: []federation.Source{{Client: cli}}, Keyspace: ks, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 3)
	go func() { done <- cache.Run(ctx) }()
	env := &federationEnv{store: federation.NewStore(cli, ks), egressEast: "10.1.0.5", egressWest: "10.2.0.5"}
	putGateway(t, cli, ks, "east", env.egressEast+":15444")
	putGateway(t, cli, ks, "west", env.egressWest+":15444")

	for _, name := range []string{"east", "west"} {
		srv := kubetest.Start(t, kubetest.Options{EtcdURL: etcd.Endpoints()[0], Prefix: "/cluster-" + name})
		kubetest.MustApply(t, srv.Config, kubetest.Path(t, "deploy/base/crds"))
		c := &cluster{name: name, kube: kubernetes.NewForConfigOrDie(srv.Config), mcs: mcsclient.NewForConfigOrDie(srv.Config), metrics: prometheus.NewRegistry()}
		ctl, err := kube.NewController(kube.Config{
			Cluster: name, RESTConfig: srv.Config, Store: env.store, Snapshots: cache,
			ResyncPeriod: 5 * time.Second, Logger: log.With("test_cluster", name), Metrics: c.metrics,
		})
		if err != nil {
			t.Fatal(err)
		}
		go func() { done <- ctl.Run(ctx) }()
		if name == "east" {
			env.east = c
		} else {
			env.west = c
		}
	}
	t.Cleanup(func() {
		cancel()
		for range 3 {
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("run: %v", err)
			}
		}
	})
	return env
}

// putGateway writes a cluster's Gateway record directly (no lease): it
// makes the cluster alive in the snapshot and names its egress.
func putGateway(t *testing.T, cli *clientv3.Client, ks federation.Keyspace, cluster, egress string) {
	t.Helper()
	v, err := federation.EncodeRecord(&straitv1.Gateway{Cluster: cluster, Id: "gw-1", Address: "192.0.2.1:15443", EgressAddress: egress})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(context.Background(), ks.Gateway(cluster, "gw-1"), string(v)); err != nil {
		t.Fatal(err)
	}
}

// eventually polls check until it returns nil or waitTimeout passes.
func eventually(t *testing.T, what string, check func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
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
			t.Fatalf("%s: not within %v: %v", what, waitTimeout, last)
		case <-tick.C:
		}
	}
}

func (c *cluster) createNamespace(t *testing.T, ns string) {
	t.Helper()
	_, err := c.kube.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

func (c *cluster) createService(t *testing.T, ns, name string, ports ...corev1.ServicePort) {
	t.Helper()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": name}, Ports: ports},
	}
	if _, err := c.kube.CoreV1().Services(ns).Create(context.Background(), svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Pods are not scheduled here (no kubelet): the Service's own
	// EndpointSlice is written the way the EndpointSlice controller would.
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-abcde", Namespace: ns, Labels: map[string]string{
			discoveryv1.LabelServiceName: name, discoveryv1.LabelManagedBy: "endpointslice-controller.k8s.io",
		}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.244.0.7"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)}}},
	}
	if _, err := c.kube.DiscoveryV1().EndpointSlices(ns).Create(context.Background(), slice, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (c *cluster) export(t *testing.T, ns, name, consumers string) {
	t.Helper()
	se := &mcsv1alpha1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
	if consumers != "" {
		se.Annotations = map[string]string{kube.AnnotationConsumers: consumers}
	}
	if _, err := c.mcs.MulticlusterV1alpha1().ServiceExports(ns).Create(context.Background(), se, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (c *cluster) unexport(t *testing.T, ns, name string) {
	t.Helper()
	if err := c.mcs.MulticlusterV1alpha1().ServiceExports(ns).Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
}

// condition returns a ServiceExport's condition of type typ.
func (c *cluster) condition(ctx context.Context, ns, name string, typ mcsv1alpha1.ServiceExportConditionType) (*metav1.Condition, error) {
	se, err := c.mcs.MulticlusterV1alpha1().ServiceExports(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	cond := meta.FindStatusCondition(se.Status.Conditions, string(typ))
	if cond == nil {
		return nil, fmt.Errorf("no %s condition yet", typ)
	}
	return cond, nil
}

func wantCondition(c *cluster, ns, name string, typ mcsv1alpha1.ServiceExportConditionType, status metav1.ConditionStatus, reason string) func(context.Context) error {
	return func(ctx context.Context) error {
		cond, err := c.condition(ctx, ns, name, typ)
		if err != nil {
			return err
		}
		if cond.Status != status || cond.Reason != reason {
			return fmt.Errorf("%s = %s/%s (%s), want %s/%s", typ, cond.Status, cond.Reason, cond.Message, status, reason)
		}
		return nil
	}
}

// checkImport checks the ServiceImport, derived Service and EndpointSlice of
// a service in c.
func checkImport(c *cluster, ns, name string, ports []mcsv1alpha1.ServicePort, clusters []string, egressIP string) func(context.Context) error {
	return func(ctx context.Context) error {
		si, err := c.mcs.MulticlusterV1alpha1().ServiceImports(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if si.Spec.Type != mcsv1alpha1.ClusterSetIP || !slices.EqualFunc(si.Spec.Ports, ports, func(a, b mcsv1alpha1.ServicePort) bool {
			return a.Name == b.Name && a.Port == b.Port && a.Protocol == b.Protocol
		}) {
			return fmt.Errorf("service import spec %+v, want ports %+v", si.Spec, ports)
		}
		var got []string
		for _, cl := range si.Status.Clusters {
			got = append(got, cl.Cluster)
		}
		if !slices.Equal(got, clusters) {
			return fmt.Errorf("service import clusters %v, want %v", got, clusters)
		}
		svc, err := c.kube.CoreV1().Services(ns).Get(ctx, kube.DerivedServiceName(name), metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(si.Spec.IPs) != 1 || si.Spec.IPs[0] != svc.Spec.ClusterIP {
			return fmt.Errorf("service import ips %v, derived service cluster IP %s", si.Spec.IPs, svc.Spec.ClusterIP)
		}
		if len(svc.Spec.Ports) != len(ports) || len(svc.Spec.Selector) != 0 {
			return fmt.Errorf("derived service spec %+v", svc.Spec)
		}
		for i, p := range svc.Spec.Ports {
			if p.Name != ports[i].Name || p.Port != ports[i].Port {
				return fmt.Errorf("derived service port %d = %s/%d, want %s/%d", i, p.Name, p.Port, ports[i].Name, ports[i].Port)
			}
		}
		list, err := c.kube.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc.Name})
		if err != nil {
			return err
		}
		if len(list.Items) != 1 {
			return fmt.Errorf("%d endpoint slices for %s, want 1", len(list.Items), svc.Name)
		}
		s := list.Items[0]
		if s.Labels[kube.LabelServiceName] != name || s.AddressType != discoveryv1.AddressTypeIPv4 {
			return fmt.Errorf("endpoint slice labels %v, address type %s", s.Labels, s.AddressType)
		}
		if len(s.Endpoints) != 1 || !slices.Equal(s.Endpoints[0].Addresses, []string{egressIP}) || !*s.Endpoints[0].Conditions.Ready {
			return fmt.Errorf("endpoint slice endpoints %+v, want the gateway egress %s", s.Endpoints, egressIP)
		}
		if len(s.Ports) != len(ports) {
			return fmt.Errorf("endpoint slice ports %+v", s.Ports)
		}
		for i, p := range s.Ports {
			if *p.Name != ports[i].Name || *p.Port != 15444 {
				return fmt.Errorf("endpoint slice port %d = %s/%d, want %s mapped to the egress port 15444", i, *p.Name, *p.Port, ports[i].Name)
			}
		}
		return nil
	}
}

// gone checks that the imported objects of a service no longer exist in c.
func gone(c *cluster, ns, name string) func(context.Context) error {
	return func(ctx context.Context) error {
		if _, err := c.mcs.MulticlusterV1alpha1().ServiceImports(ns).Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("service import still there (%v)", err)
		}
		if _, err := c.kube.CoreV1().Services(ns).Get(ctx, kube.DerivedServiceName(name), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("derived service still there (%v)", err)
		}
		list, err := c.kube.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: kube.LabelServiceName + "=" + name})
		if err != nil {
			return err
		}
		if len(list.Items) != 0 {
			return fmt.Errorf("%d derived endpoint slices left", len(list.Items))
		}
		return nil
	}
}

func exportIn(store *federation.Store, cluster, ns, name string, check func(*straitv1.Export) error) func(context.Context) error {
	return func(ctx context.Context) error {
		e, err := store.GetExport(ctx, cluster, ns, name)
		if err != nil {
			return err
		}
		return check(e)
	}
}

func noExportIn(store *federation.Store, cluster, ns, name string) func(context.Context) error {
	return func(ctx context.Context) error {
		_, err := store.GetExport(ctx, cluster, ns, name)
		if errors.Is(err, federation.ErrNotFound) {
			return nil
		}
		return fmt.Errorf("export still there (%v)", err)
	}
}

func tcp(name string, port int32) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Port: port, Protocol: corev1.ProtocolTCP}
}

func ptr[T any](v T) *T { return &v }

// TestController runs two clusters on real API servers through export,
// import, conflict and withdrawal.
func TestController(t *testing.T) {
	env := startEnv(t)
	const ns = "shop"
	env.east.createNamespace(t, ns)
	env.west.createNamespace(t, ns)
	importPorts := []mcsv1alpha1.ServicePort{
		{Name: "http", Port: 8080, Protocol: corev1.ProtocolTCP},
		{Name: "grpc", Port: 9090, Protocol: corev1.ProtocolTCP},
	}

	t.Run("export in east, import in west", func(t *testing.T) {
		env.east.createService(t, ns, "cart", tcp("http", 8080), tcp("grpc", 9090))
		env.east.export(t, ns, "cart", "spiffe://west.strait.local, spiffe://east.strait.local/ns/shop/sa/web")
		eventually(t, "export in etcd", exportIn(env.store, "east", ns, "cart", func(e *straitv1.Export) error {
			if len(e.GetPorts()) != 2 || e.GetPorts()[0].GetName() != "http" || e.GetPorts()[0].GetPort() != 8080 ||
				e.GetPorts()[1].GetName() != "grpc" || e.GetPorts()[1].GetPort() != 9090 {
				return fmt.Errorf("ports %v", e.GetPorts())
			}
			if !slices.Equal(e.GetConsumers(), []string{"spiffe://west.strait.local", "spiffe://east.strait.local/ns/shop/sa/web"}) {
				return fmt.Errorf("consumers %v", e.GetConsumers())
			}
			return nil
		}))
		eventually(t, "import in west", checkImport(env.west, ns, "cart", importPorts, []string{"east"}, env.egressWest))
		eventually(t, "import in east", checkImport(env.east, ns, "cart", importPorts, []string{"east"}, env.egressEast))
		eventually(t, "Valid", wantCondition(env.east, ns, "cart", mcsv1alpha1.ServiceExportConditionValid, metav1.ConditionTrue, "Valid"))
		eventually(t, "Ready", wantCondition(env.east, ns, "cart", mcsv1alpha1.ServiceExportConditionReady, metav1.ConditionTrue, "Ready"))
		eventually(t, "no Conflict", wantCondition(env.east, ns, "cart", mcsv1alpha1.ServiceExportConditionConflict, metav1.ConditionFalse, "NoConflicts"))
		se, err := env.east.mcs.MulticlusterV1alpha1().ServiceExports(ns).Get(context.Background(), "cart", metav1.GetOptions{})
		if err != nil || !slices.Contains(se.Finalizers, kube.Finalizer) {
			t.Fatalf("finalizer: %v %v", se.Finalizers, err)
		}
		eventually(t, "metrics", func(context.Context) error {
			if v := testutil.ToFloat64(gauge(t, env.east.metrics, "strait_kube_service_exports")); v != 1 {
				return fmt.Errorf("strait_kube_service_exports = %v", v)
			}
			if v := testutil.ToFloat64(gauge(t, env.west.metrics, "strait_kube_service_imports")); v != 1 {
				return fmt.Errorf("strait_kube_service_imports = %v", v)
			}
			return nil
		})
	})

	t.Run("port conflict", func(t *testing.T) {
		// West exports the same service later with another port for
		// "http": the oldest export (east) wins, west is in conflict.
		env.west.createService(t, ns, "cart", tcp("http", 8081), tcp("grpc", 9090))
		env.west.export(t, ns, "cart", "")
		eventually(t, "west Conflict", wantCondition(env.west, ns, "cart", mcsv1alpha1.ServiceExportConditionConflict, metav1.ConditionTrue, "PortConflict"))
		eventually(t, "east Conflict", wantCondition(env.east, ns, "cart", mcsv1alpha1.ServiceExportConditionConflict, metav1.ConditionTrue, "PortConflict"))
		// Both clusters serve it, with the oldest export's ports.
		eventually(t, "import in west", checkImport(env.west, ns, "cart", importPorts, []string{"east", "west"}, env.egressWest))
		cond, err := env.west.condition(context.Background(), ns, "cart", mcsv1alpha1.ServiceExportConditionConflict)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("west Conflict message: %s", cond.Message)

		env.west.unexport(t, ns, "cart")
		eventually(t, "west export withdrawn", noExportIn(env.store, "west", ns, "cart"))
		eventually(t, "west ServiceExport deleted", func(ctx context.Context) error {
			_, err := env.west.mcs.MulticlusterV1alpha1().ServiceExports(ns).Get(ctx, "cart", metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return nil
			}
			return fmt.Errorf("still there (%v)", err)
		})
		eventually(t, "east Conflict cleared", wantCondition(env.east, ns, "cart", mcsv1alpha1.ServiceExportConditionConflict, metav1.ConditionFalse, "NoConflicts"))
		eventually(t, "import in west", checkImport(env.west, ns, "cart", importPorts, []string{"east"}, env.egressWest))
	})

	t.Run("invalid exports", func(t *testing.T) {
		env.east.export(t, ns, "ghost", "")
		eventually(t, "NoService", wantCondition(env.east, ns, "ghost", mcsv1alpha1.ServiceExportConditionValid, metav1.ConditionFalse, "NoService"))
		env.east.createService(t, ns, "badconsumers", tcp("http", 80))
		env.east.export(t, ns, "badconsumers", "not-a-spiffe-id")
		eventually(t, "InvalidConsumers", wantCondition(env.east, ns, "badconsumers", mcsv1alpha1.ServiceExportConditionValid, metav1.ConditionFalse, kube.ReasonInvalidConsumers))
		for _, name := range []string{"ghost", "badconsumers"} {
			if _, err := env.store.GetExport(context.Background(), "east", ns, name); !errors.Is(err, federation.ErrNotFound) {
				t.Errorf("export of invalid %s: %v", name, err)
			}
		}
		// The Service appears later: the export follows.
		env.east.createService(t, ns, "ghost", corev1.ServicePort{Port: 7000})
		eventually(t, "ghost exported", exportIn(env.store, "east", ns, "ghost", func(e *straitv1.Export) error {
			if len(e.GetPorts()) != 1 || e.GetPorts()[0].GetName() != "tcp-7000" {
				return fmt.Errorf("ports %v", e.GetPorts())
			}
			return nil
		}))
	})

	t.Run("udp refused, servers annotation", func(t *testing.T) {
		// Strait carries TCP only: a service with a UDP port is not
		// exported, and the condition says why.
		env.east.createService(t, ns, "dns", tcp("dns-tcp", 53), corev1.ServicePort{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP})
		env.east.export(t, ns, "dns", "")
		eventually(t, "UnsupportedProtocol", wantCondition(env.east, ns, "dns", mcsv1alpha1.ServiceExportConditionValid, metav1.ConditionFalse, kube.ReasonUnsupportedProtocol))
		cond, err := env.east.condition(context.Background(), ns, "dns", mcsv1alpha1.ServiceExportConditionValid)
		if err != nil || !strings.Contains(cond.Message, "Strait carries TCP only") || !strings.Contains(cond.Message, "dns 53/UDP") {
			t.Errorf("Valid condition = %+v, %v; want a message naming the UDP port and saying Strait carries TCP only", cond, err)
		}
		if _, err := env.store.GetExport(context.Background(), "east", ns, "dns"); !errors.Is(err, federation.ErrNotFound) {
			t.Errorf("export of a UDP service: %v", err)
		}

		env.east.createService(t, ns, "search", tcp("http", 80))
		se := &mcsv1alpha1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Name: "search", Namespace: ns,
			Annotations: map[string]string{kube.AnnotationServers: "search, search-canary"}}}
		if _, err := env.east.mcs.MulticlusterV1alpha1().ServiceExports(ns).Create(context.Background(), se, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, "servers in etcd", exportIn(env.store, "east", ns, "search", func(e *straitv1.Export) error {
			if !slices.Equal(e.GetServers(), []string{"search", "search-canary"}) {
				return fmt.Errorf("servers %v", e.GetServers())
			}
			return nil
		}))
	})

	t.Run("withdraw", func(t *testing.T) {
		env.east.unexport(t, ns, "cart")
		eventually(t, "export withdrawn", noExportIn(env.store, "east", ns, "cart"))
		eventually(t, "west import removed", gone(env.west, ns, "cart"))
		eventually(t, "east import removed", gone(env.east, ns, "cart"))
		// The exporting cluster's own Service and EndpointSlice are
		// untouched.
		if _, err := env.east.kube.CoreV1().Services(ns).Get(context.Background(), "cart", metav1.GetOptions{}); err != nil {
			t.Errorf("the exported service itself: %v", err)
		}
		if _, err := env.east.kube.DiscoveryV1().EndpointSlices(ns).Get(context.Background(), "cart-abcde", metav1.GetOptions{}); err != nil {
			t.Errorf("the exported service's endpoint slice: %v", err)
		}
	})

	t.Run("unmanaged objects are left alone", func(t *testing.T) {
		// A ServiceImport another MCS implementation owns.
		si := &mcsv1alpha1.ServiceImport{
			ObjectMeta: metav1.ObjectMeta{Name: "ghost", Namespace: ns},
			Spec:       mcsv1alpha1.ServiceImportSpec{Type: mcsv1alpha1.ClusterSetIP, Ports: []mcsv1alpha1.ServicePort{{Port: 1, Protocol: corev1.ProtocolTCP}}},
		}
		// ghost is exported by east: west imports it. Replace west's
		// import by an unmanaged one once it exists and check that it
		// is not overwritten.
		eventually(t, "ghost imported in west", func(ctx context.Context) error {
			_, err := env.west.mcs.MulticlusterV1alpha1().ServiceImports(ns).Get(ctx, "ghost", metav1.GetOptions{})
			return err
		})
		env.east.unexport(t, ns, "ghost")
		eventually(t, "ghost import removed", gone(env.west, ns, "ghost"))
		if _, err := env.west.mcs.MulticlusterV1alpha1().ServiceImports(ns).Create(context.Background(), si, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		env.east.export(t, ns, "ghost", "")
		eventually(t, "ghost exported again", exportIn(env.store, "east", ns, "ghost", func(*straitv1.Export) error { return nil }))
		eventually(t, "east imports it", func(ctx context.Context) error {
			_, err := env.east.mcs.MulticlusterV1alpha1().ServiceImports(ns).Get(ctx, "ghost", metav1.GetOptions{})
			return err
		})
		got, err := env.west.mcs.MulticlusterV1alpha1().ServiceImports(ns).Get(context.Background(), "ghost", metav1.GetOptions{})
		if err != nil || got.Spec.Ports[0].Port != 1 || got.Labels[kube.LabelManagedBy] != "" {
			t.Fatalf("unmanaged service import changed: %+v %v", got, err)
		}
	})
}

// gauge finds a metric by name in a registry.
func gauge(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	return collectorFunc(func(ch chan<- prometheus.Metric) {
		mfs, err := reg.Gather()
		if err != nil {
			t.Error(err)
			return
		}
		for _, mf := range mfs {
			if mf.GetName() == name {
				for _, m := range mf.GetMetric() {
					ch <- prometheus.MustNewConstMetric(prometheus.NewDesc(name, "", nil, nil), prometheus.GaugeValue, m.GetGauge().GetValue())
				}
			}
		}
	})
}

type collectorFunc func(chan<- prometheus.Metric)

func (f collectorFunc) Describe(chan<- *prometheus.Desc)    {}
func (f collectorFunc) Collect(ch chan<- prometheus.Metric) { f(ch) }
