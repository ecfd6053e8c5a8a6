// Package kubetest runs a real kube-apiserver for tests, bound to a
// testing.TB: it is stopped when the test ends. Two servers on one etcd (each
// under its own prefix) play two clusters.
//
// The kube-apiserver binary is built from the k8s.io/kubernetes release
// pinned in e2e/kubetools/go.mod by e2e/kubetools/build.sh, which Start runs
// first (a no-op when the cached binary is up to date; about 3 minutes on 2
// cores when it is not). When the build fails the test is skipped, or fails
// when CI=true: CI must never silently skip the Kubernetes tests.
//
//	srv := kubetest.Start(t, kubetest.Options{})
//	client := kubernetes.NewForConfigOrDie(srv.Config)
//	kubetest.Apply(t, srv.Config, kubetest.Path(t, "deploy/base/crds"))
package kubetest
