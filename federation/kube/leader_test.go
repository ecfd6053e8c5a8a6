package kube_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	mcsclient "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned"

	"github.com/strait-mesh/strait/federation"
	"github.com/strait-mesh/strait/federation/kube"
	"github.com/strait-mesh/strait/federation/kube/kubetest"
	"github.com/strait-mesh/strait/internal/etcdtest"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

func snapshotWith(services ...string) *federation.Snapshot {
	recs := []federation.Record{{Message: &straitv1.Gateway{Cluster: "solo", Id: "gw", Address: "192.0.2.1:15443", EgressAddress: "10.9.0.1:15444"}}}
	for _, s := range services {
		recs = append(recs, federation.Record{Message: &straitv1.Export{Cluster: "other", Namespace: "default", Service: s,
			Ports: []*straitv1.ServicePort{{Name: "http", Port: 80, Protocol: straitv1.Protocol_PROTOCOL_TCP}}}})
	}
	return federation.NewSnapshot(int64(len(services)), recs)
}

// TestLeaderElection runs two controllers of one cluster: one reconciles;
// when it stops, the other takes over.
func TestLeaderElection(t *testing.T) {
	etcd, cli := etcdtest.Start(t, 1)
	srv := kubetest.Start(t, kubetest.Options{EtcdURL: etcd.Endpoints()[0], Prefix: "/leader"})
	kubetest.MustApply(t, srv.Config, kubetest.Path(t, "deploy/base/crds"))
	kc := kubernetes.NewForConfigOrDie(srv.Config)
	mc := mcsclient.NewForConfigOrDie(srv.Config)
	snaps := federation.NewStaticSource(snapshotWith("one"))
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	type running struct {
		cancel context.CancelFunc
		done   chan error
	}
	ctls := map[string]running{}
	for _, id := range []string{"a", "b"} {
		ctl, err := kube.NewController(kube.Config{
			Cluster: "solo", RESTConfig: srv.Config, Store: federation.NewStore(cli, federation.Keyspace{}), Snapshots: snaps,
			LeaderElection: &kube.LeaderElection{Namespace: "default", Name: "strait-kube-solo", Identity: id,
				LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 500 * time.Millisecond},
			Logger: log.With("id", id),
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		r := running{cancel: cancel, done: make(chan error, 1)}
		go func() { r.done <- ctl.Run(ctx) }()
		ctls[id] = r
	}
	t.Cleanup(func() {
		for _, r := range ctls {
			r.cancel()
			if err := <-r.done; !errors.Is(err, context.Canceled) {
				t.Errorf("run: %v", err)
			}
		}
	})
	imported := func(name string) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := mc.MulticlusterV1alpha1().ServiceImports("default").Get(ctx, name, metav1.GetOptions{})
			return err
		}
	}
	eventually(t, "import by the first leader", imported("one"))
	lease, err := kc.CoordinationV1().Leases("default").Get(context.Background(), "strait-kube-solo", metav1.GetOptions{})
	if err != nil || lease.Spec.HolderIdentity == nil {
		t.Fatalf("lease: %+v %v", lease, err)
	}
	leader := *lease.Spec.HolderIdentity
	t.Logf("leader: %s", leader)
	// The leader stops (releasing its lease); the other one must take over
	// and import the next service.
	ctls[leader].cancel()
	if err := <-ctls[leader].done; !errors.Is(err, context.Canceled) {
		t.Fatalf("leader run: %v", err)
	}
	ctls[leader].done <- context.Canceled // for the cleanup
	snaps.Set(snapshotWith("one", "two"))
	eventually(t, "import by the new leader", imported("two"))
}
