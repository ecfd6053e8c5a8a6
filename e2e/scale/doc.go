// Package scale measures what a large federation costs: a real 3-member
// etcd (the pinned etcd binary, members on loopback), N simulated clusters
// that write as real clusters do (each with two gateways holding live
// leases through federation.Registrar, durable exports, and an endpoint
// registrar per cluster holding its endpoints under a lease), trust
// bundles for N trust domains, and real federation.Cache instances
// watching all of it as the gateways of different clusters would. The
// simulated clusters are writers, not processes.
//
// Under churn (a share of the endpoints changing readiness every second,
// a cluster's gateways dying without revoking their leases and coming
// back, a bundle rotating) it measures initial sync time and heap per
// cache, propagation of each change to every cache, the lease keepalive
// load on etcd, and etcd's own CPU, memory and database size. Two real
// clusters (node, gateway and proxy each) run among the simulated ones;
// during churn a connection starts through them every 200 ms, each on
// its own, and every one that fails is reported with its reasons (the
// client's error, the real components' lines and counters about it, the
// routing state, and how this process was scheduled meanwhile).
//
//	bin, _ := toolbin.Path(ctx, "etcd")
//	rep, err := scale.Run(ctx, scale.Config{Clusters: 300, EtcdBinary: bin, Dir: dir})
//	fmt.Print(rep.Table())
//
// `make scale` runs cmd/strait-scale at 1,000 clusters; the package's test
// runs a small federation for a few seconds.
package scale
