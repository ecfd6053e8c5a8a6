// Package etcdcluster runs a real multi-member etcd cluster (the etcd binary
// pinned in e2e/tools) on hosts of a netns topology, and injects the faults
// Strait must survive: kill the leader, stop every member, restart them.
//
//	topo := netns.BuildT(t, netns.Spec{Clusters: []netns.ClusterSpec{
//		{Name: "etcd", Hosts: []string{"m1", "m2", "m3"}, Routed: true}, ...}})
//	c, err := etcdcluster.Start(ctx, etcdcluster.Config{
//		Hosts: topo.Cluster("etcd").Hosts(), Binary: etcdPath, DataDir: t.TempDir()})
//	leader, err := c.Leader(ctx)
//	err = c.Kill(leader)           // kill -9
//	err = c.WaitHealthy(ctx)       // a new leader among the survivors
//	err = c.Restart(ctx, leader)   // rejoins with its data
//
// Members listen for clients on <host addr>:2379 and for peers on :2380;
// Endpoints returns the client URLs for Strait's configuration. Client and
// the health checks dial from Config.ClientHost's namespace.
package etcdcluster
