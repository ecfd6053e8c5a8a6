package kube

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"

	"github.com/strait-mesh/strait/federation"
)

func TestConfigValidateListsEveryProblem(t *testing.T) {
	_, err := NewController(Config{
		Cluster: "Not_A_Label", ResyncPeriod: -1,
		LeaderElection: &LeaderElection{Name: "x", RenewDeadline: 20e9},
	})
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{"kube: config", "cluster", "REST config", "store is required", "snapshot source is required",
		"resync period", "namespace, a name and an identity", "retry period < renew deadline < lease duration"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestConfigDefaults(t *testing.T) {
	c, err := NewController(Config{
		Cluster: "east", RESTConfig: &rest.Config{Host: "https://127.0.0.1:1"},
		Store: &federation.Store{}, Snapshots: federation.NewStaticSource(nil),
		LeaderElection: &LeaderElection{Namespace: "ns", Name: "n", Identity: "i"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.cfg.ResyncPeriod != DefaultResyncPeriod || c.cfg.RetryDelay != DefaultRetryDelay || c.cfg.Kube == nil || c.cfg.MCS == nil ||
		c.cfg.LeaderElection.LeaseDuration != DefaultLeaseDuration || c.cfg.Logger == nil || c.cfg.LookupIP == nil {
		t.Errorf("defaults not applied: %+v", c.cfg)
	}
}

func TestDerivedServiceName(t *testing.T) {
	if got := DerivedServiceName("hello"); got != "derived-hello" {
		t.Errorf("DerivedServiceName(hello) = %q", got)
	}
	long := strings.Repeat("a", 63)
	got := DerivedServiceName(long)
	if len(got) > 63 || !strings.HasPrefix(got, "derived-") || got == DerivedServiceName(long[:62]) {
		t.Errorf("DerivedServiceName(63 a) = %q", got)
	}
}

func TestPortName(t *testing.T) {
	for _, tc := range []struct {
		p    corev1.ServicePort
		want string
	}{
		{corev1.ServicePort{Name: "http", Port: 80}, "http"},
		{corev1.ServicePort{Port: 7000}, "tcp-7000"},
		{corev1.ServicePort{Port: 53, Protocol: corev1.ProtocolUDP}, "udp-53"},
	} {
		if got := portName(tc.p); got != tc.want {
			t.Errorf("portName(%+v) = %q, want %q", tc.p, got, tc.want)
		}
	}
}
