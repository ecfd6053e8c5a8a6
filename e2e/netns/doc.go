// Package netns builds multi-cluster network topologies out of Linux network
// namespaces for Strait's end-to-end tests, runs processes inside them, and
// removes every trace afterwards. It needs root and iproute2 (and nftables for
// Host.Partition).
//
// A topology has one namespace per host (a gateway, a pod, an etcd member),
// joined by a veth pair to its cluster's bridge in a "router" namespace; the
// routers are joined by veth pairs to a bridge in a WAN namespace. Addresses
// come from Spec.Subnet (default 10.77.0.0/16): the WAN is 10.77.0.0/24 (the
// WAN namespace is 10.77.0.1, cluster i's router 10.77.0.(2+i), WAN link
// addresses from 10.77.0.100 up), cluster i is 10.77.(i+1).0/24 (router .1,
// hosts from .10 in the order given).
//
// Clusters cannot reach each other directly: a host's packets to another
// cluster's subnet are refused by its router (network unreachable). Traffic
// between clusters goes through WAN links (package wan) listening on WAN
// addresses, as through a cloud load balancer in front of a cluster's
// gateways. A cluster marked Routed (for instance a shared etcd region) is
// reachable from every cluster by plain routing through the WAN namespace.
//
//	topo := netns.BuildT(t, netns.Spec{Clusters: []netns.ClusterSpec{
//		{Name: "east", Hosts: []string{"gw1", "client"}},
//		{Name: "west", Hosts: []string{"gw1", "pod1"}},
//	}})
//	west := topo.Host("west", "pod1")
//	srv, _ := west.StartHelper("http-server", "-listen", west.AddrPort(8080))
//	link, _ := topo.StartLink(ctx, wan.LinkConfig{Listen: ":8080",
//		Backends: []string{west.AddrPort(8080)}, Delay: 15 * time.Millisecond})
//	out, err := topo.Host("east", "client").Output(ctx, "curl", "-s", "http://"+link.Addr().String())
//
// Namespaces are named "<prefix>-wan", "<prefix>-<cluster>" (router) and
// "<prefix>-<cluster>-<host>"; interface names inside them are short and fixed
// (eth0, br0, wan, h<n>, c<n>), so they fit the kernel's 15-character limit
// whatever the names. Close kills every process the topology started and
// deletes its namespaces, which removes their veths, bridges and nftables
// tables with them. A topology records its owner's process ID under
// /run/strait-e2e, so SweepStale can remove what a crashed run left behind
// without touching topologies of test processes still running; Sweep removes
// one prefix unconditionally.
package netns
