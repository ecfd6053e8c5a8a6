package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/strait-mesh/strait/federation"
	"github.com/strait-mesh/strait/federation/kube"
)

// startKubeController runs the Kubernetes MCS controller of cluster until
// ctx ends. kubeconfig is a kubeconfig file; empty means the in-cluster
// configuration of the pod the process runs in. The controllers of a
// cluster's gateway replicas elect a leader with a Lease named
// strait-kube-<cluster> in the kubeconfig's (or the pod's) namespace.
// reg is not used yet: proxies register their own endpoints.
func startKubeController(ctx context.Context, kubeconfig, cluster string, st *federation.Store, snaps federation.SnapshotSource, reg federation.Registry, log *slog.Logger, metrics prometheus.Registerer) error {
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: kubeconfig}, &clientcmd.ConfigOverrides{})
	rc, err := cc.ClientConfig()
	if err != nil {
		if kubeconfig == "" {
			return fmt.Errorf("kube: no --kubeconfig given and not running in a pod: %w", err)
		}
		return fmt.Errorf("kube: %s: %w", kubeconfig, err)
	}
	ns, _, err := cc.Namespace()
	if err != nil {
		return fmt.Errorf("kube: namespace: %w", err)
	}
	identity, err := os.Hostname()
	if err != nil {
		return fmt.Errorf("kube: identity: %w", err)
	}
	rc.UserAgent = "strait/" + version
	c, err := kube.NewController(kube.Config{
		Cluster: cluster, RESTConfig: rc, Store: st, Snapshots: snaps, Registry: reg,
		LeaderElection: &kube.LeaderElection{Namespace: ns, Name: "strait-kube-" + cluster, Identity: identity},
		Logger:         log.With("component", "kube"), Metrics: metrics,
	})
	if err != nil {
		return err
	}
	return c.Run(ctx)
}
