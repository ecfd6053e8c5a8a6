package federation

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/strait-mesh/strait/internal/etcdtest"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

func TestStoreExportKeepsCreatedAt(t *testing.T) {
	_, cli := etcdtest.Start(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	store := NewStore(cli, Keyspace{Prefix: "/custom/"})
	first, err := store.PutExport(ctx, &straitv1.Export{Cluster: "west", Namespace: "shop", Service: "payments",
		Ports: []*straitv1.ServicePort{tcpPort("http", 80)}})
	if err != nil {
		t.Fatal(err)
	}
	if first.GetCreatedAt() == nil {
		t.Fatal("PutExport did not set CreatedAt")
	}
	later := time.Now().Add(time.Hour)
	second, err := store.PutExport(ctx, testExport("west", "shop", "payments", later, tcpPort("http", 81)))
	if err != nil {
		t.Fatal(err)
	}
	if !second.GetCreatedAt().AsTime().Equal(first.GetCreatedAt().AsTime()) {
		t.Errorf("update changed CreatedAt from %v to %v", first.GetCreatedAt().AsTime(), second.GetCreatedAt().AsTime())
	}
	got, err := store.GetExport(ctx, "west", "shop", "payments")
	if err != nil || got.GetPorts()[0].GetPort() != 81 || !got.GetCreatedAt().AsTime().Equal(first.GetCreatedAt().AsTime()) {
		t.Fatalf("GetExport = %v, %v", got, err)
	}
	if _, err := store.PutExport(ctx, &straitv1.Export{Cluster: "west", Namespace: "shop", Service: "x"}); !errors.Is(err, ErrInvalidRecord) {
		t.Errorf("invalid export: err = %v, want ErrInvalidRecord", err)
	}
	if err := store.DeleteExport(ctx, "west", "shop", "payments"); err != nil {
		t.Fatal(err)
	}
	if err := store.DeleteExport(ctx, "west", "shop", "payments"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second delete: err = %v, want ErrNotFound", err)
	}
	if _, err := store.GetExport(ctx, "west", "shop", "payments"); !errors.Is(err, ErrNotFound) {
		t.Errorf("get after delete: err = %v, want ErrNotFound", err)
	}
}

func TestStorePublishBundleOnlyMovesForward(t *testing.T) {
	_, cli := etcdtest.Start(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	store := NewStore(cli, Keyspace{})
	ca1, ca2 := testCA(t, "ca1"), testCA(t, "ca2")
	bundle := func(seq uint64, cas ...[]byte) *straitv1.TrustBundle {
		return &straitv1.TrustBundle{TrustDomain: "west.example", Sequence: seq, X509Authorities: cas}
	}
	steps := []struct {
		name    string
		bundle  *straitv1.TrustBundle
		wantErr error
		wantSeq uint64
	}{
		{"first", bundle(1, ca1), nil, 1},
		{"add a CA", bundle(2, ca1, ca2), nil, 2},
		{"equal sequence", bundle(2, ca1), ErrStaleBundle, 2},
		{"rollback", bundle(1, ca1), ErrStaleBundle, 2},
		{"no CA", bundle(3), ErrInvalidRecord, 2},
		{"drop the old CA", bundle(3, ca2), nil, 3},
	}
	for _, st := range steps {
		err := store.PublishBundle(ctx, st.bundle)
		if !errors.Is(err, st.wantErr) || (st.wantErr == nil && err != nil) {
			t.Errorf("%s: err = %v, want %v", st.name, err, st.wantErr)
		}
		rec, err := store.get(ctx, store.Keyspace().Bundle("west.example"))
		if err != nil {
			t.Fatal(err)
		}
		if got := rec.Message.(*straitv1.TrustBundle).GetSequence(); got != st.wantSeq {
			t.Errorf("%s: stored sequence = %d, want %d", st.name, got, st.wantSeq)
		}
	}
}

func TestStoreConfig(t *testing.T) {
	_, cli := etcdtest.Start(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	store := NewStore(cli, Keyspace{})
	if _, err := store.GetConfig(ctx, ""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetConfig of nothing: err = %v, want ErrNotFound", err)
	}
	global := &straitv1.GatewayConfig{MaxIncomingStreams: 500}
	west := &straitv1.GatewayConfig{MaxIncomingStreams: 700}
	if err := store.PutConfig(ctx, "", global); err != nil {
		t.Fatal(err)
	}
	if err := store.PutConfig(ctx, "west", west); err != nil {
		t.Fatal(err)
	}
	if err := store.PutConfig(ctx, "West", west); !errors.Is(err, ErrInvalidRecord) {
		t.Errorf("bad cluster name: err = %v", err)
	}
	for cluster, want := range map[string]uint32{"": 500, "west": 700} {
		got, err := store.GetConfig(ctx, cluster)
		if err != nil || got.GetMaxIncomingStreams() != want {
			t.Errorf("GetConfig(%q) = %v, %v; want %d", cluster, got, err, want)
		}
	}
}
