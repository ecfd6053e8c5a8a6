// Package inject is Strait's sidecar injector: a Kubernetes mutating
// admission webhook that adds the proxy (strait-proxy) and its init
// container (strait-init) to pods, the shape
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
// strait-federation).
//
// Transparent capture is on unless the pod is annotated strait.io/capture:
// "false". The init container (root, capabilities NET_ADMIN, and CHOWN for
// the CA directory; nothing else) runs `strait-init --exclude-gid
// <proxy group>`, which programs the nftables rules of package
// proxy/capture/nft over netlink from the same distroless image (a binary
// of its own, so that the sidecar's binary carries none of that code): the pod's
// outbound TCP goes to the proxy's transparent listener (127.0.0.1:15001)
// and its DNS to the proxy's responder (127.0.0.1:15053). The proxy runs
// with `--transparent --no-mark`: it has no capabilities, so it cannot mark
// its own connections, and runs in its own group (Config.ProxyGroup,
// default 1337) that the rules exclude; its user stays 65532, which the
// built-in CA's files belong to. With "false" the init container only
// prepares the CA directory (`--no-capture`) and the proxy serves its
// upstream listeners.
//
//	inj, err := inject.New(inject.Config{Image: "strait:dev", Logger: log, Metrics: reg})
//	srv, err := inject.NewServer(inject.ServerConfig{Addr: ":15017", CertFile: "tls.crt", KeyFile: "tls.key", Injector: inj})
//	err = srv.Run(ctx)
package inject
