package kubenode

import (
	"fmt"
	"log/slog"
	"net/netip"
	"regexp"
	"time"

	"github.com/hashicorp/go-multierror"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/strait-mesh/strait/e2e/netns"
)

// Defaults of Config.
const (
	// DefaultPodCIDR is the node's pod subnet.
	DefaultPodCIDR = "10.244.0.0/24"
	// DefaultServiceCIDR holds the cluster's Service IPs; its first address
	// is the "kubernetes" Service and its tenth CoreDNS ("kube-dns").
	DefaultServiceCIDR = "10.96.0.0/24"
	// DefaultClusterDomain is the cluster's DNS domain.
	DefaultClusterDomain = "cluster.local"
	// DefaultBridge is the pod bridge inside the node's namespace.
	DefaultBridge = "skbr0"
	// DefaultStartTimeout bounds Start once the binaries exist.
	DefaultStartTimeout = 3 * time.Minute
)

// Ports the node's components listen on inside its network namespace. The
// namespace is the node's own, so they never meet another test's ports;
// they are still not Kubernetes' defaults, so that a stray process of the
// host can never be mistaken for one of the node's.
const (
	PortAPIServer         = 16443
	PortEtcd              = 12379
	PortEtcdPeer          = 12380
	PortKubelet           = 11250
	PortKubeletHealthz    = 11248
	PortControllerManager = 11257
	PortScheduler         = 11259
	PortProxyHealthz      = 11256
	PortProxyMetrics      = 11249
)

// Config describes one single-node Kubernetes cluster. Zero values mean the
// documented default.
type Config struct {
	// Host is the network namespace the node runs in (its control plane,
	// container runtime, kubelet, kube-proxy and pod bridge); pods get
	// namespaces of their own behind the bridge. Required.
	Host *netns.Host
	// Name is the node's name. Default: "<cluster>-<host>" of Host.
	Name string
	// NodeIP is the node's address (its InternalIP, the pods'
	// status.hostIP, the kubelet's listen address). Default: Host's
	// address. Another address is added to the loopback device of Host's
	// namespace (and removed by Close): give a WAN address of the topology,
	// on which a WAN link forwards to Host's address, and the node
	// advertises the address that other clusters dial, as a cloud node's
	// public address.
	NodeIP netip.Addr
	// BinDir holds kube-apiserver, kube-controller-manager, kube-scheduler,
	// kubelet, kube-proxy, kubectl and coredns. Default: built (or reused)
	// by e2e/kubetools/build.sh.
	BinDir string
	// Etcd is the etcd binary. Default: the pinned one (e2e/toolbin).
	Etcd string
	// Dir holds the node's state: certificates, configuration, etcd data,
	// containerd's root and state, the kubelet's root. It must not be under
	// /run, /var/lib or /var/log, which the node's mount namespace replaces.
	// Default: a new directory under os.TempDir()/strait-kubenode, removed
	// by Close.
	Dir string
	// PodCIDR is the node's pod subnet (an IPv4 prefix of /16 to /28).
	// Default: DefaultPodCIDR.
	PodCIDR netip.Prefix
	// ServiceCIDR is the cluster's Service IP range (IPv4, /12 to /28).
	// Default: DefaultServiceCIDR.
	ServiceCIDR netip.Prefix
	// ClusterDomain is the DNS domain of Services. Default: cluster.local.
	ClusterDomain string
	// Bridge names the pod bridge. Default: DefaultBridge.
	Bridge string
	// Images are image tarballs (OCI layout or docker-archive) imported
	// into the node's containerd before the kubelet starts. The pause and
	// CoreDNS images are always imported.
	Images []string
	// LocalVolumes is how many PersistentVolumes (directories of the node)
	// the default StorageClass "standard" offers, each of VolumeSize.
	// Zero means 8; negative means none (and no StorageClass).
	LocalVolumes int
	// VolumeSize is each local volume's capacity. Zero means 1Gi.
	VolumeSize resource.Quantity
	// Corefile is CoreDNS's configuration. Default: DefaultCorefile of
	// ClusterDomain.
	Corefile string
	// Manifests are files or directories of manifests applied (kubectl
	// apply --server-side) once the node is Ready and before CoreDNS is
	// installed; their CRDs are waited for. The MCS CRDs that
	// MulticlusterCorefile needs go here.
	Manifests []string
	// StartTimeout bounds Start once binaries and images exist. Default:
	// DefaultStartTimeout.
	StartTimeout time.Duration
	// Logger receives the node's logs. Default: slog.Default().
	Logger *slog.Logger
}

var nodeNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

func (c Config) withDefaults() Config {
	if c.Name == "" && c.Host != nil {
		c.Name = c.Host.Cluster() + "-" + c.Host.Name()
	}
	if !c.NodeIP.IsValid() && c.Host != nil {
		c.NodeIP = c.Host.Addr()
	}
	if !c.PodCIDR.IsValid() {
		c.PodCIDR = netip.MustParsePrefix(DefaultPodCIDR)
	}
	if !c.ServiceCIDR.IsValid() {
		c.ServiceCIDR = netip.MustParsePrefix(DefaultServiceCIDR)
	}
	if c.ClusterDomain == "" {
		c.ClusterDomain = DefaultClusterDomain
	}
	if c.LocalVolumes == 0 {
		c.LocalVolumes = 8
	}
	if c.LocalVolumes < 0 {
		c.LocalVolumes = 0
	}
	if c.VolumeSize.IsZero() {
		c.VolumeSize = resource.MustParse("1Gi")
	}
	if c.Corefile == "" {
		c.Corefile = DefaultCorefile(c.ClusterDomain)
	}
	if c.Bridge == "" {
		c.Bridge = DefaultBridge
	}
	if c.StartTimeout == 0 {
		c.StartTimeout = DefaultStartTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func (c Config) validate() error {
	var errs *multierror.Error
	add := func(format string, args ...any) {
		errs = multierror.Append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...))
	}
	if c.Host == nil {
		add("no Host")
	}
	if !nodeNameRE.MatchString(c.Name) {
		add("node name %q: want a DNS label", c.Name)
	}
	if !c.PodCIDR.Addr().Is4() || c.PodCIDR.Bits() < 16 || c.PodCIDR.Bits() > 28 || c.PodCIDR.Masked() != c.PodCIDR {
		add("pod CIDR %s: want an IPv4 prefix of /16 to /28", c.PodCIDR)
	}
	if !c.ServiceCIDR.Addr().Is4() || c.ServiceCIDR.Bits() < 12 || c.ServiceCIDR.Bits() > 28 || c.ServiceCIDR.Masked() != c.ServiceCIDR {
		add("service CIDR %s: want an IPv4 prefix of /12 to /28", c.ServiceCIDR)
	}
	if c.NodeIP.IsValid() && (!c.NodeIP.Is4() || c.NodeIP.IsLoopback() || c.NodeIP.IsUnspecified()) {
		add("node IP %s: want an IPv4 address other than loopback and unspecified", c.NodeIP)
	}
	if c.PodCIDR.Overlaps(c.ServiceCIDR) {
		add("pod CIDR %s overlaps service CIDR %s", c.PodCIDR, c.ServiceCIDR)
	}
	if len(c.Bridge) > 15 || c.Bridge == "" {
		add("bridge name %q: want 1 to 15 characters", c.Bridge)
	}
	if c.StartTimeout < 0 {
		add("negative start timeout")
	}
	return errs.ErrorOrNil()
}

// serviceIP returns the n-th address of the service CIDR (1: the
// "kubernetes" Service, 10: kube-dns).
func (c Config) serviceIP(n int) netip.Addr {
	a := c.ServiceCIDR.Addr()
	for range n {
		a = a.Next()
	}
	return a
}

// DNSIP returns the ClusterIP of the cluster's DNS Service (kube-dns).
func (c Config) DNSIP() netip.Addr { return c.serviceIP(10) }
