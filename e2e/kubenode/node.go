package kubenode

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-multierror"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/strait-mesh/strait/e2e/netns"
	"github.com/strait-mesh/strait/e2e/toolbin"
	"github.com/strait-mesh/strait/e2e/wait"
)

// Node is a running single-node Kubernetes cluster. Close stops it and
// removes every trace of it.
type Node struct {
	cfg     Config
	log     *slog.Logger
	paths   paths
	id      string
	ownDir  bool
	addedIP bool // Config.NodeIP was added to the loopback device
	cgroup  string
	mnt     *mountNS
	procs   map[string]*netns.Proc
	order   []string // component names in start order
	rest    *rest.Config
	client  *kubernetes.Clientset
	timings []Timing
	// baseImages are the pause and CoreDNS image tarballs.
	baseImages []string
	mu         sync.Mutex
	closed     bool
	closeErr   error
}

// Timing is how long one start step took.
type Timing struct {
	Step string
	Took time.Duration
}

// paths are the node's files.
type paths struct {
	dir, pki, etcdData, socket, containerdConf, containerdRoot, containerdState  string
	cniConf, ipam, kubeletRoot, kubeletConf, podLogs, volumePlugins, flexVolumes string
	resolvConf, proxyConf, images, opt                                           string
	admin, controllerManager, scheduler, kubelet, proxy                          string // kubeconfigs
}

func newPaths(dir string) paths {
	j := func(p ...string) string { return filepath.Join(append([]string{dir}, p...)...) }
	return paths{
		dir: dir, pki: j("pki"), etcdData: j("etcd"),
		socket: j("containerd", "containerd.sock"), containerdConf: j("containerd", "config.toml"),
		containerdRoot: j("containerd", "root"), containerdState: j("containerd", "state"), opt: j("containerd", "opt"),
		cniConf: j("cni", "net.d"), ipam: j("cni", "ipam"),
		kubeletRoot: j("kubelet"), kubeletConf: j("config", "kubelet.yaml"), podLogs: j("pod-logs"),
		volumePlugins: j("volume-plugins"), flexVolumes: j("flex-volumes"),
		resolvConf: j("config", "resolv.conf"), proxyConf: j("config", "kube-proxy.yaml"), images: j("images"),
		admin: j("config", "admin.kubeconfig"), controllerManager: j("config", "controller-manager.kubeconfig"),
		scheduler: j("config", "scheduler.kubeconfig"), kubelet: j("config", "kubelet.kubeconfig"),
		proxy: j("config", "kube-proxy.kubeconfig"),
	}
}

// Start starts a single-node cluster on cfg.Host: etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler, containerd, kubelet, kube-proxy
// and CoreDNS, and returns once the node is Ready and CoreDNS serves. On
// error everything started is removed again.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, netns.ErrNotRoot
	}
	n := &Node{cfg: cfg, log: cfg.Logger.With("node", cfg.Name), procs: map[string]*netns.Proc{}}
	if err := n.start(ctx); err != nil {
		return nil, errors.Join(err, n.Close())
	}
	return n, nil
}

func (n *Node) step(name string, fn func() error) error {
	start := time.Now()
	if err := fn(); err != nil {
		return fmt.Errorf("kubenode: %s: %s: %w", n.cfg.Name, name, err)
	}
	n.timings = append(n.timings, Timing{Step: name, Took: time.Since(start)})
	n.log.Debug("start step done", "step", name, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

func (n *Node) start(ctx context.Context) error {
	cfg := n.cfg
	var err error
	if cfg.BinDir == "" {
		if err := n.step("binaries", func() error {
			cfg.BinDir, err = Binaries(ctx)
			return err
		}); err != nil {
			return err
		}
	}
	if cfg.Etcd == "" {
		if cfg.Etcd, err = toolbin.Path(ctx, "etcd"); err != nil {
			return err
		}
	}
	n.cfg = cfg
	dir := cfg.Dir
	if dir == "" {
		base := filepath.Join(os.TempDir(), "strait-kubenode")
		if err := os.MkdirAll(base, 0o755); err != nil {
			return fmt.Errorf("kubenode: %w", err)
		}
		if dir, err = os.MkdirTemp(base, cfg.Name+"-"); err != nil {
			return fmt.Errorf("kubenode: %w", err)
		}
		n.ownDir = true
	}
	n.paths = newPaths(dir)
	n.id = filepath.Base(dir)
	n.cgroup = "/strait-kubenode-" + n.id
	if err := n.register(ctx); err != nil {
		return err
	}
	startCtx, cancel := context.WithTimeout(ctx, cfg.StartTimeout)
	defer cancel()
	ctx = startCtx

	if err := n.step("files", func() error { return n.writeFiles(ctx) }); err != nil {
		return err
	}
	if cfg.NodeIP != cfg.Host.Addr() {
		if err := n.step("node IP", func() error { return n.nodeIPOnLoopback(ctx, "add") }); err != nil {
			return err
		}
		n.addedIP = true
	}
	// The images are written while the control plane starts.
	images := make(chan error, 1)
	go func() { images <- n.buildImages(ctx) }()
	steps := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"mount namespace", n.startMountNS},
		{"etcd", n.startEtcd},
		{"kube-apiserver", n.startAPIServer},
		{"containerd", n.startContainerd},
		{"images", func(ctx context.Context) error {
			if err := <-images; err != nil {
				return err
			}
			return n.importImages(ctx)
		}},
		{"controllers", n.startControllers},
		{"kubelet", n.startKubelet},
		{"node ready", n.waitNodeReady},
		{"local volumes", func(ctx context.Context) error {
			return n.addLocalVolumes(ctx, n.cfg.LocalVolumes, n.cfg.VolumeSize)
		}},
		{"manifests", n.applyManifests},
		{"coredns", n.installCoreDNS},
	}
	for _, s := range steps {
		if err := n.step(s.name, func() error { return s.fn(ctx) }); err != nil {
			return err
		}
	}
	return nil
}

// nodeIPOnLoopback adds or deletes ("add", "del") Config.NodeIP on the
// loopback device of the node's network namespace.
func (n *Node) nodeIPOnLoopback(ctx context.Context, op string) error {
	prefix := netip.PrefixFrom(n.cfg.NodeIP, 32).String()
	if _, err := n.cfg.Host.Output(ctx, "ip", "addr", op, prefix, "dev", "lo"); err != nil {
		return fmt.Errorf("kubenode: ip addr %s %s dev lo: %w", op, prefix, err)
	}
	return nil
}

// register records the node in StateDir (sweeping crashed runs' nodes
// first) and creates the node's cgroup root.
func (n *Node) register(ctx context.Context) error {
	s, err := lockState()
	if err != nil {
		return err
	}
	defer s.unlock()
	if swept, err := s.sweepLocked(ctx); err != nil {
		n.log.Warn("sweeping stale nodes", "err", err)
	} else if len(swept) > 0 {
		n.log.Info("swept stale nodes", "nodes", swept)
	}
	if err := s.writeOwner(n.owner()); err != nil {
		return err
	}
	return createCgroup(n.cgroup)
}

func (n *Node) owner() owner {
	o := owner{ID: n.id, PID: os.Getpid(), Start: procStart(os.Getpid()), Cgroup: n.cgroup, Dir: n.paths.dir, OwnDir: n.ownDir}
	if n.mnt != nil {
		o.MountNS = n.mnt.id
	}
	return o
}

func (n *Node) writeFiles(context.Context) error {
	p, cfg := n.paths, n.cfg
	for _, d := range []string{p.pki, filepath.Dir(p.socket), p.containerdRoot, p.containerdState, p.opt,
		p.cniConf, p.ipam, p.kubeletRoot, filepath.Dir(p.kubeletConf), p.podLogs, p.volumePlugins, p.flexVolumes, p.images} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("kubenode: %w", err)
		}
	}
	if err := os.MkdirAll(p.etcdData, 0o700); err != nil { // etcd wants it private
		return fmt.Errorf("kubenode: %w", err)
	}
	ca, err := newPKI(p.pki)
	if err != nil {
		return err
	}
	nodeIP := net.IP(cfg.NodeIP.AsSlice())
	hostIP := net.IP(cfg.Host.Addr().AsSlice())
	apiIP := net.IP(cfg.serviceIP(1).AsSlice())
	d := cfg.ClusterDomain
	certs := []certSpec{
		{name: "apiserver", cn: "kube-apiserver", server: true, ips: []net.IP{hostIP, nodeIP, apiIP, net.IPv4(127, 0, 0, 1)},
			dns: []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc." + d, "localhost"}},
		{name: "apiserver-kubelet-client", cn: "kube-apiserver-kubelet-client", orgs: []string{"system:masters"}, client: true},
		{name: "admin", cn: "kubernetes-admin", orgs: []string{"system:masters"}, client: true},
		{name: "controller-manager", cn: "system:kube-controller-manager", client: true},
		{name: "scheduler", cn: "system:kube-scheduler", client: true},
		{name: "kube-proxy", cn: "system:kube-proxy", client: true},
		{name: "kubelet", cn: "system:node:" + cfg.Name, orgs: []string{"system:nodes"}, client: true},
		{name: "kubelet-serving", cn: "system:node:" + cfg.Name, server: true, ips: []net.IP{nodeIP}, dns: []string{cfg.Name}},
	}
	for _, c := range certs {
		if _, _, err := ca.issue(c); err != nil {
			return err
		}
	}
	if _, err := ca.serviceAccountKey(); err != nil {
		return err
	}
	server := "https://" + net.JoinHostPort(cfg.Host.Addr().String(), strconv.Itoa(PortAPIServer))
	for path, user := range map[string]string{p.admin: "admin", p.controllerManager: "controller-manager",
		p.scheduler: "scheduler", p.kubelet: "kubelet", p.proxy: "kube-proxy"} {
		err := render(path, kubeconfigTmpl, kubeconfigData{Cluster: cfg.Name, Server: server, CA: ca.caPath, User: user,
			Cert: filepath.Join(p.pki, user+".crt"), Key: filepath.Join(p.pki, user+".key")})
		if err != nil {
			return err
		}
	}
	if err := render(p.containerdConf, containerdTmpl, containerdData{Root: p.containerdRoot, State: p.containerdState,
		Socket: p.socket, Opt: p.opt, SandboxImage: PauseImage, CNIConfDir: p.cniConf}); err != nil {
		return err
	}
	conflist, err := cniConflist(cfg.Bridge, cfg.PodCIDR.String(), p.ipam)
	if err != nil {
		return fmt.Errorf("kubenode: cni: %w", err)
	}
	if err := writeFile(filepath.Join(p.cniConf, "10-strait-kubenode.conflist"), conflist); err != nil {
		return err
	}
	// Pods with dnsPolicy Default get this; nothing answers there (the
	// nodes are offline), so a lookup outside the cluster fails at once.
	if err := writeFile(p.resolvConf, []byte("nameserver "+cfg.Host.Router().Addr().String()+"\n")); err != nil {
		return err
	}
	if err := render(p.kubeletConf, kubeletTmpl, kubeletData{NodeIP: cfg.NodeIP.String(), CA: ca.caPath,
		ServingCert: filepath.Join(p.pki, "kubelet-serving.crt"), ServingKey: filepath.Join(p.pki, "kubelet-serving.key"),
		CgroupRoot: n.cgroup, Socket: p.socket, PodCIDR: cfg.PodCIDR.String(), DNSIP: cfg.DNSIP().String(),
		ClusterDomain: d, ResolvConf: p.resolvConf, PodLogsDir: p.podLogs, VolumePluginDir: p.volumePlugins,
		Port: PortKubelet, HealthzPort: PortKubeletHealthz}); err != nil {
		return err
	}
	if err := render(p.proxyConf, kubeProxyTmpl, kubeProxyData{Kubeconfig: p.proxy, NodeName: cfg.Name,
		PodCIDR: cfg.PodCIDR.String(), HealthzPort: PortProxyHealthz, MetricsPort: PortProxyMetrics}); err != nil {
		return err
	}
	n.rest = &rest.Config{
		Host: server,
		TLSClientConfig: rest.TLSClientConfig{CAFile: ca.caPath,
			CertFile: filepath.Join(p.pki, "admin.crt"), KeyFile: filepath.Join(p.pki, "admin.key")},
		Dial:    cfg.Host.DialContext,
		QPS:     50,
		Burst:   100,
		Timeout: 30 * time.Second,
	}
	n.client, err = kubernetes.NewForConfig(n.rest)
	if err != nil {
		return fmt.Errorf("kubenode: client: %w", err)
	}
	return nil
}

func (n *Node) startMountNS(ctx context.Context) error {
	m, err := startMountNS(ctx, filepath.Join(n.paths.dir, "sysctl"))
	if err != nil {
		return err
	}
	n.mnt = m
	s, err := lockState()
	if err != nil {
		return err
	}
	defer s.unlock()
	return s.writeOwner(n.owner())
}

// run starts a component inside the node's network and mount namespaces.
func (n *Node) run(name, bin string, args ...string) error {
	path, wrapped := n.mnt.wrap(bin, args...)
	p, err := n.cfg.Host.StartProc(netns.ProcConfig{Path: path, Args: wrapped, Label: name})
	if err != nil {
		return err
	}
	n.mu.Lock()
	n.procs[name] = p
	n.order = append(n.order, name)
	n.mu.Unlock()
	return nil
}

func (n *Node) bin(name string) string { return filepath.Join(n.cfg.BinDir, name) }

func (n *Node) startEtcd(ctx context.Context) error {
	client := "http://127.0.0.1:" + strconv.Itoa(PortEtcd)
	peer := "http://127.0.0.1:" + strconv.Itoa(PortEtcdPeer)
	if err := n.run("etcd", n.cfg.Etcd, "--name", n.cfg.Name, "--data-dir", n.paths.etcdData,
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", n.cfg.Name+"="+peer, "--unsafe-no-fsync", "--log-level", "warn"); err != nil {
		return err
	}
	hc := n.cfg.Host.HTTPClient()
	hc.Timeout = 2 * time.Second
	return n.poll(ctx, "etcd", func(ctx context.Context) (bool, error) {
		resp, err := hc.Get(client + "/health")
		if err != nil {
			return false, wait.Retry(err)
		}
		resp.Body.Close()
		return resp.StatusCode == 200, nil
	})
}

func (n *Node) startAPIServer(ctx context.Context) error {
	p, cfg := n.paths, n.cfg
	pki := func(f string) string { return filepath.Join(p.pki, f) }
	err := n.run("kube-apiserver", n.bin("kube-apiserver"),
		"--etcd-servers=http://127.0.0.1:"+strconv.Itoa(PortEtcd),
		"--bind-address=0.0.0.0",
		"--secure-port="+strconv.Itoa(PortAPIServer),
		"--advertise-address="+cfg.Host.Addr().String(),
		"--cert-dir="+p.pki,
		"--tls-cert-file="+pki("apiserver.crt"),
		"--tls-private-key-file="+pki("apiserver.key"),
		"--client-ca-file="+pki("ca.crt"),
		"--kubelet-client-certificate="+pki("apiserver-kubelet-client.crt"),
		"--kubelet-client-key="+pki("apiserver-kubelet-client.key"),
		"--kubelet-certificate-authority="+pki("ca.crt"),
		"--kubelet-preferred-address-types=InternalIP",
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction",
		"--service-account-issuer=https://kubernetes.default.svc."+cfg.ClusterDomain,
		"--service-account-key-file="+pki("sa.key"),
		"--service-account-signing-key-file="+pki("sa.key"),
		"--service-cluster-ip-range="+cfg.ServiceCIDR.String(),
		"--allow-privileged=true",
		"--enable-priority-and-fairness=false",
		"--profiling=false",
		"--v=1",
	)
	if err != nil {
		return err
	}
	return n.poll(ctx, "kube-apiserver", func(ctx context.Context) (bool, error) {
		_, err := n.client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err == nil, wait.Retry(err)
	})
}

func (n *Node) startContainerd(ctx context.Context) error {
	if err := n.run("containerd", "/usr/bin/containerd", "--config", n.paths.containerdConf, "--log-level", "warn"); err != nil {
		return err
	}
	return n.poll(ctx, "containerd", func(ctx context.Context) (bool, error) {
		if _, err := os.Stat(n.paths.socket); err != nil {
			return false, nil
		}
		return true, nil
	})
}

func (n *Node) buildImages(ctx context.Context) error {
	imgs, err := baseImages(ctx, n.paths.images, n.cfg.BinDir)
	n.baseImages = imgs
	return err
}

func (n *Node) importImages(ctx context.Context) error {
	for _, img := range append(n.baseImages, n.cfg.Images...) {
		if err := n.ImportImage(ctx, img); err != nil {
			return err
		}
	}
	return nil
}

func (n *Node) startControllers(ctx context.Context) error {
	p, cfg := n.paths, n.cfg
	pki := func(f string) string { return filepath.Join(p.pki, f) }
	if err := n.run("kube-controller-manager", n.bin("kube-controller-manager"),
		"--kubeconfig="+p.controllerManager,
		"--authentication-kubeconfig="+p.controllerManager,
		"--authorization-kubeconfig="+p.controllerManager,
		"--bind-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(PortControllerManager),
		"--service-account-private-key-file="+pki("sa.key"),
		"--root-ca-file="+pki("ca.crt"),
		"--cluster-signing-cert-file="+pki("ca.crt"),
		"--cluster-signing-key-file="+pki("ca.key"),
		"--use-service-account-credentials=true",
		"--leader-elect=false",
		"--cluster-name="+cfg.Name,
		"--flex-volume-plugin-dir="+p.flexVolumes,
		"--profiling=false",
		"--v=1",
	); err != nil {
		return err
	}
	return n.run("kube-scheduler", n.bin("kube-scheduler"),
		"--kubeconfig="+p.scheduler,
		"--authentication-kubeconfig="+p.scheduler,
		"--authorization-kubeconfig="+p.scheduler,
		"--bind-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(PortScheduler),
		"--leader-elect=false",
		"--profiling=false",
		"--v=1",
	)
}

func (n *Node) startKubelet(ctx context.Context) error {
	p, cfg := n.paths, n.cfg
	if err := n.run("kubelet", n.bin("kubelet"),
		"--config="+p.kubeletConf,
		"--kubeconfig="+p.kubelet,
		"--root-dir="+p.kubeletRoot,
		"--hostname-override="+cfg.Name,
		"--node-ip="+cfg.NodeIP.String(),
		"--v=1",
	); err != nil {
		return err
	}
	return n.run("kube-proxy", n.bin("kube-proxy"), "--config="+p.proxyConf, "--v=1")
}

func (n *Node) waitNodeReady(ctx context.Context) error {
	return n.poll(ctx, "node Ready", func(ctx context.Context) (bool, error) {
		node, err := n.client.CoreV1().Nodes().Get(ctx, n.cfg.Name, metav1.GetOptions{})
		if err != nil {
			return false, wait.Retry(err)
		}
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeReady {
				if c.Status == corev1.ConditionTrue {
					return true, nil
				}
				return false, wait.Retry(fmt.Errorf("%s: %s", c.Reason, c.Message))
			}
		}
		return false, nil
	})
}

func (n *Node) applyManifests(ctx context.Context) error {
	if len(n.cfg.Manifests) == 0 {
		return nil
	}
	args := []string{"apply", "--server-side"}
	for _, m := range n.cfg.Manifests {
		args = append(args, "-f", m)
	}
	if _, err := n.Kubectl(ctx, nil, args...); err != nil {
		return err
	}
	// A CRD serves its resources once Established.
	crds, err := n.Kubectl(ctx, nil, "get", "crd", "-o", "name")
	if err != nil || len(strings.TrimSpace(string(crds))) == 0 {
		return err
	}
	_, err = n.Kubectl(ctx, nil, "wait", "--for", "condition=Established", "crd", "--all", "--timeout", "60s")
	return err
}

func (n *Node) installCoreDNS(ctx context.Context) error {
	manifest, err := corednsManifest(n.cfg.Corefile, CoreDNSImage, n.cfg.DNSIP().String())
	if err != nil {
		return err
	}
	if _, err := n.Kubectl(ctx, manifest, "apply", "-f", "-"); err != nil {
		return err
	}
	err = n.poll(ctx, "coredns available", func(ctx context.Context) (bool, error) {
		d, err := n.client.AppsV1().Deployments("kube-system").Get(ctx, "coredns", metav1.GetOptions{})
		if err != nil {
			return false, wait.Retry(err)
		}
		return d.Status.AvailableReplicas >= 1, nil
	})
	if err != nil {
		return fmt.Errorf("%w\n%s", err, n.PodReport(ctx, "kube-system", "k8s-app=kube-dns"))
	}
	return nil
}

// poll waits for cond, failing early when a component of the node exits.
func (n *Node) poll(ctx context.Context, what string, cond func(context.Context) (bool, error)) error {
	err := wait.Until(ctx, 50*time.Millisecond, func(ctx context.Context) (bool, error) {
		if err := n.exited(); err != nil {
			return false, err
		}
		return cond(ctx)
	})
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrNotReady, what, err)
	}
	return nil
}

// exited returns an error naming a component that exited, with its log's
// end.
func (n *Node) exited() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, name := range n.order {
		p := n.procs[name]
		if done, err := p.Exited(); done {
			log := p.Log()
			if len(log) > 3000 {
				log = "…" + log[len(log)-3000:]
			}
			return fmt.Errorf("kubenode: %s exited (%v); log %s:\n%s", name, err, p.LogPath(), log)
		}
	}
	return nil
}

// Name returns the node's name.
func (n *Node) Name() string { return n.cfg.Name }

// Host returns the network namespace the node runs in.
func (n *Node) Host() *netns.Host { return n.cfg.Host }

// Config returns an administrator's (system:masters) client configuration;
// its connections start inside the node's network namespace.
func (n *Node) Config() *rest.Config { return rest.CopyConfig(n.rest) }

// Client returns an administrator's client.
func (n *Node) Client() kubernetes.Interface { return n.client }

// Kubeconfig returns the path of an administrator's kubeconfig, for kubectl
// run inside the node's network namespace.
func (n *Node) Kubeconfig() string { return n.paths.admin }

// PodLogsDir returns the kubelet's pod log directory: one directory per
// pod, <namespace>_<name>_<uid>/<container>/<restart>.log, in the CRI log
// format. The kubelet removes a pod's directory with the pod.
func (n *Node) PodLogsDir() string { return n.paths.podLogs }

// DNSIP returns the cluster DNS Service's address.
func (n *Node) DNSIP() string { return n.cfg.DNSIP().String() }

// Proc returns a running component ("etcd", "kube-apiserver",
// "kube-controller-manager", "kube-scheduler", "containerd", "kubelet",
// "kube-proxy"), or nil.
func (n *Node) Proc(name string) *netns.Proc {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.procs[name]
}

// Timings returns how long each start step took.
func (n *Node) Timings() []Timing { return append([]Timing(nil), n.timings...) }

// KubectlCommand returns the command of the pinned kubectl run as the
// administrator inside the node's network namespace, for callers that
// stream its input or output (kubectl exec -i).
func (n *Node) KubectlCommand(ctx context.Context, args ...string) *exec.Cmd {
	// kubectl's discovery cache would go to $HOME/.kube.
	return n.cfg.Host.Command(ctx, n.bin("kubectl"), append([]string{"--kubeconfig", n.paths.admin,
		"--cache-dir", filepath.Join(n.paths.dir, "kubectl-cache")}, args...)...)
}

// Kubectl runs the pinned kubectl as the administrator inside the node's
// network namespace, with stdin (if not nil), and returns its output.
func (n *Node) Kubectl(ctx context.Context, stdin []byte, args ...string) ([]byte, error) {
	cmd := n.KubectlCommand(ctx, args...)
	if stdin != nil {
		cmd.Stdin = strings.NewReader(string(stdin))
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("kubenode: %s: kubectl %s: %w: %s", n.cfg.Name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// Close stops every component (SIGKILL: nothing of the node is kept), kills
// the pods' containers, and removes the node's cgroups and state directory.
// It is idempotent and returns every problem it met.
func (n *Node) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return n.closeErr
	}
	n.closed = true
	order := append([]string(nil), n.order...)
	procs := n.procs
	n.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var errs *multierror.Error
	for i := len(order) - 1; i >= 0; i-- {
		if err := procs[order[i]].Kill(); err != nil {
			errs = multierror.Append(errs, err)
		}
	}
	if n.addedIP {
		if err := n.nodeIPOnLoopback(ctx, "del"); err != nil {
			errs = multierror.Append(errs, err)
		}
	}
	// The shims and anything else containerd started live on in the mount
	// namespace; the containers in the node's cgroups.
	if n.mnt != nil {
		if err := killMountNS(ctx, n.mnt.id); err != nil {
			errs = multierror.Append(errs, err)
		}
		n.mnt.kill()
	}
	if n.id != "" {
		s, err := lockState()
		if err != nil {
			errs = multierror.Append(errs, err)
		} else {
			if err := cleanupNode(ctx, n.owner()); err != nil {
				errs = multierror.Append(errs, err)
			} else if err := os.Remove(ownerPath(n.id)); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = multierror.Append(errs, fmt.Errorf("kubenode: %w", err))
			}
			if _, err := s.sweepLocked(ctx); err != nil {
				errs = multierror.Append(errs, err)
			}
			s.unlock()
		}
	}
	n.mu.Lock()
	n.closeErr = errs.ErrorOrNil()
	n.mu.Unlock()
	return n.closeErr
}
