// Package inject is Strait's sidecar injector: a Kubernetes mutating
// admission webhook that adds the proxy (strait-proxy) and its init
// container (`strait-proxy init`) to pods, the shape
// deploy/examples/west-hello.yaml used to build by hand.
//
// Who is injected: every pod of a namespace labelled
// strait.io/inject=enabled (the API server calls PathNamespace for them:
// the MutatingWebhookConfiguration's namespaceSelector decides), unless the
// pod is annotated strait.io/inject: "false"; and, in other namespaces, a
// pod annotated strait.io/inject: "true" (PathPod). A pod that already has
// the strait-proxy container is left as it is, so injection is idempotent
// and hand-built sidecars keep working. An annotation with any other value
// is refused with an error that names it.
//
// The sidecar reads its config file (the format of `strait proxy --config`)
// from a ConfigMap of the pod's namespace, strait-proxy unless the
// annotation strait.io/proxy-config names another; its @POD_IP@, @POD_NAME@
// and @ETCD_ENDPOINT@ are expanded by the proxy from the environment the
// injector sets (ETCD_ENDPOINT comes from the namespace's ConfigMap
// strait-federation). The annotation strait.io/capture: "true" has the init
// container install the capture rules too (`strait-proxy init` runs
// iptables: the image must hold it, and Strait's distroless image does not,
// so capture is off by default and the proxy serves its upstream listeners).
//
//	inj, err := inject.New(inject.Config{Image: "strait:dev", Logger: log, Metrics: reg})
//	srv, err := inject.NewServer(inject.ServerConfig{Addr: ":15017", CertFile: "tls.crt", KeyFile: "tls.key", Injector: inj})
//	err = srv.Run(ctx)
package inject
