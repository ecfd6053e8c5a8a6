package kubenode

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"text/template"
)

// The node's configuration files. Values come from the node's Config and
// paths; the settings past this VM's obstacles are in KUBE-NODE.md (shared
// notes) and commented where they appear.

// kubeconfigTmpl is a client configuration with a certificate from the
// node's CA.
var kubeconfigTmpl = template.Must(template.New("kubeconfig").Parse(`apiVersion: v1
kind: Config
clusters:
- name: {{.Cluster}}
  cluster:
    server: {{.Server}}
    certificate-authority: {{.CA}}
users:
- name: {{.User}}
  user:
    client-certificate: {{.Cert}}
    client-key: {{.Key}}
contexts:
- name: {{.Cluster}}
  context:
    cluster: {{.Cluster}}
    user: {{.User}}
current-context: {{.Cluster}}
`))

type kubeconfigData struct {
	Cluster, Server, CA, User, Cert, Key string
}

// containerdTmpl is containerd 1.6's configuration (version 2) with a root,
// state, socket and CNI configuration of the node's own.
var containerdTmpl = template.Must(template.New("containerd").Parse(`version = 2
root = "{{.Root}}"
state = "{{.State}}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{{.Socket}}"

[ttrpc]
  address = "{{.Socket}}.ttrpc"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{{.Opt}}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{{.SandboxImage}}"
  # The kubelet asks for oom_score_adj -998, which needs CAP_SYS_RESOURCE
  # (not in this VM's bounding set): without this every sandbox fails.
  restrict_oom_score_adj = true
  # Pod network namespaces under the state directory, not /run/netns, where
  # other tests' "ip netns add" mounts shadow them.
  netns_mounts_under_state_dir = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{{.CNIConfDir}}"
`))

type containerdData struct {
	Root, State, Socket, Opt, SandboxImage, CNIConfDir string
}

// cniConflist is the pod network: a bridge of the node's own with host-local
// addresses from the pod CIDR, masquerading to the outside, and portmap for
// hostPort.
func cniConflist(bridge, podCIDR, ipamDir string) ([]byte, error) {
	conf := map[string]any{
		"cniVersion": "1.0.0",
		"name":       "strait-kubenode",
		"plugins": []any{
			map[string]any{
				"type":        "bridge",
				"bridge":      bridge,
				"isGateway":   true,
				"ipMasq":      true,
				"hairpinMode": true,
				"ipam": map[string]any{
					"type":    "host-local",
					"ranges":  [][]map[string]string{{{"subnet": podCIDR}}},
					"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
					"dataDir": ipamDir,
				},
			},
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
		},
	}
	return json.MarshalIndent(conf, "", "  ")
}

// kubeletTmpl is the kubelet's KubeletConfiguration.
var kubeletTmpl = template.Must(template.New("kubelet").Parse(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: {{.NodeIP}}
port: {{.Port}}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: {{.HealthzPort}}
tlsCertFile: {{.ServingCert}}
tlsPrivateKeyFile: {{.ServingKey}}
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: {{.CA}}
authorization:
  mode: Webhook
# containerd 1.6 does not implement CRI RuntimeConfig, so the kubelet uses
# the driver configured here.
cgroupDriver: cgroupfs
cgroupRoot: {{.CgroupRoot}}
cgroupsPerQOS: true
containerRuntimeEndpoint: unix://{{.Socket}}
imageServiceEndpoint: unix://{{.Socket}}
failSwapOn: false
podCIDR: {{.PodCIDR}}
clusterDNS:
- {{.DNSIP}}
clusterDomain: {{.ClusterDomain}}
resolvConf: {{.ResolvConf}}
podLogsDir: {{.PodLogsDir}}
volumePluginDir: {{.VolumePluginDir}}
staticPodPath: ""
rotateCertificates: false
serverTLSBootstrap: false
serializeImagePulls: false
# Images come from tarballs: never collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: 2%
  nodefs.inodesFree: 2%
  imagefs.available: 2%
syncFrequency: 10s
fileCheckFrequency: 10s
nodeStatusUpdateFrequency: 5s
maxPods: 60
`))

type kubeletData struct {
	NodeIP, CA, ServingCert, ServingKey, CgroupRoot, Socket, PodCIDR, DNSIP string
	ClusterDomain, ResolvConf, PodLogsDir, VolumePluginDir                  string
	Port, HealthzPort                                                       int
}

// kubeProxyTmpl is kube-proxy's configuration: iptables mode, and nothing
// that would change the host's (global) sysctls: conntrack limits stay as
// they are and NodePorts are not served on localhost (route_localnet).
var kubeProxyTmpl = template.Must(template.New("kube-proxy").Parse(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection:
  kubeconfig: {{.Kubeconfig}}
hostnameOverride: {{.NodeName}}
bindAddress: 0.0.0.0
healthzBindAddress: 127.0.0.1:{{.HealthzPort}}
metricsBindAddress: 127.0.0.1:{{.MetricsPort}}
clusterCIDR: {{.PodCIDR}}
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
iptables:
  localhostNodePorts: false
  syncPeriod: 30s
  minSyncPeriod: 0s
`))

type kubeProxyData struct {
	Kubeconfig, NodeName, PodCIDR string
	HealthzPort, MetricsPort      int
}

// render executes tmpl into path.
func render(path string, tmpl *template.Template, data any) error {
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, data); err != nil {
		return fmt.Errorf("kubenode: render %s: %w", tmpl.Name(), err)
	}
	return writeFile(path, buf.Bytes())
}

func writeFile(path string, data []byte) error {
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("kubenode: %w", err)
	}
	return nil
}
