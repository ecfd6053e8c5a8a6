// Package devcluster runs a whole Strait federation in one process: an
// embedded etcd, and for each cluster its own trust domain and built-in CA,
// a gateway, and proxies with their applications. It is `strait dev`, and
// the topology the in-process integration tests use.
//
//	f, err := devcluster.New(devcluster.DefaultConfig(dataDir))
//	go f.Run(ctx)
//	<-f.Ready()
//	fmt.Println(f.UpstreamAddr("east", "hello"))
package devcluster
