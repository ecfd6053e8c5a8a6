// Package kubenode runs real single-node Kubernetes clusters for Strait's
// end-to-end tests, offline and without a container engine: etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler, containerd,
// kubelet, kube-proxy (iptables) and CoreDNS as a pod, all inside one
// network namespace of an e2e/netns topology (a host), with pods in network
// namespaces of their own behind a bridge in it. Images come from tarballs
// (package ociimage) imported into the node's containerd; nothing is pulled.
// The Kubernetes binaries and CoreDNS are pinned in e2e/kubetools and built
// once into its gitignored bin/ (Binaries). It needs root, iproute2,
// util-linux (unshare, nsenter), iptables, and Debian's containerd, runc and
// containernetworking-plugins.
//
//	topo := netns.BuildT(t, netns.Spec{Clusters: []netns.ClusterSpec{{Name: "east", Hosts: []string{"node"}}}})
//	appTar, err := kubenode.BuildGoImage(ctx, t.TempDir(), kubenode.GoImage{Package: "./e2e/kubenode/cmd/kubeapp", Ref: "strait.test/kubeapp:v1"})
//	node := kubenode.StartT(t, kubenode.Config{Host: topo.Host("east", "node"), Images: []string{appTar}})
//	pods, err := node.Client().CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
//	out, err := node.Kubectl(ctx, nil, "get", "pods", "-A")
//
// # What it changes on the host, and how it is undone
//
// Almost everything a node does stays in namespaces that die with it: its
// iptables rules, bridge, routes and forwarding sysctl are in its network
// namespace (deleted with the topology); its daemons' mounts (overlay
// root filesystems, pod volumes, pod network namespace handles) are in a
// private mount namespace whose /run, /var/lib and /var/log are empty
// tmpfs mounts, so containerd's shim sockets, the CNI cache and the
// kubelet's log links never reach the host. The host-wide kernel settings
// the kubelet insists on (vm.overcommit_memory, kernel.panic,
// kernel.panic_on_oops, …) are files bound over /proc/sys in that
// namespace: the kubelet reads the values it wants and the host's kernel
// is never changed. What remains host-wide:
//
//   - the node's cgroup root (/strait-kubenode-<id> in every hierarchy),
//     with the pods' containers in it: killed and removed by Close;
//   - the node's state directory (certificates, etcd, containerd's root,
//     the kubelet's root) under os.TempDir()/strait-kubenode: removed.
//
// Each running node is recorded in StateDir with its owner's process ID;
// Start (and SweepStale) clean up after nodes whose owner died.
//
// The settings past this VM's obstacles (containerd's
// restrict_oom_score_adj and netns_mounts_under_state_dir, the kubelet's
// cgroupfs driver, kube-proxy leaving conntrack sysctls alone) are
// commented where they are set (render.go).
package kubenode
