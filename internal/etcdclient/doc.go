// Package etcdclient is the etcd client that package federation (and
// internal/node) build with, under clientv3's names: go.etcd.io/etcd/client/v3
// itself by default, or internal/etcdlite, the subset that federation uses,
// over etcd's gRPC API, with the build tag straitetcdlite.
//
// The per-pod proxy strait-proxy is built with the tag
// (cmd/strait-proxy/build.flags): clientv3, zap and etcd's generated
// messages are 1.35 MB of the 14.8 MB binary that every sidecar maps. Every
// other binary and every test builds federation on clientv3, so that a
// *clientv3.Client passes where federation asks for a *Client.
//
// It declares only what federation uses; a new use there needs its name
// here, in both files, and in etcdlite.
//
//	import clientv3 "github.com/strait-mesh/strait/internal/etcdclient"
//
//	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithLimit(500))
package etcdclient
