// Package etcdlite is the subset of etcd's Go client (go.etcd.io/etcd/client/v3)
// that package federation uses, with the same names and signatures: reads
// (with ranges, limits, revisions), puts, deletes, transactions with
// comparisons, prefix watches from a revision with progress requests, and
// leases (grant, keepalive, time to live, revoke). It calls etcd's gRPC
// API and encodes its requests and decodes its responses itself in
// protobuf's wire format (wire.go), without etcd's generated messages
// (go.etcd.io/etcd/api/v3/etcdserverpb), whose descriptors (etcd's whole
// API, with the grpc-gateway and Google API annotations it imports) would
// be linked and built in memory.
//
// The per-pod proxy strait-proxy builds federation with it (build tag
// straitetcdlite, see package etcdclient): clientv3, zap and etcdserverpb
// are 1.35 MB of code that every sidecar would map.
//
// Where it differs from clientv3:
//
//   - A watch runs on a gRPC stream of its own and does not resume by
//     itself: when the stream fails (an etcd member restarts, the leader
//     is lost with WithRequireLeader) the channel delivers one response
//     whose Err() tells why, then closes. federation's cache and bundle
//     watchers resume from their revision, as they do after any failure.
//
//   - RequestProgress asks every watch stream of the client for a progress
//     notification.
//
//   - Endpoints that mix plain and TLS schemes are refused.
//
//   - There is no authentication by user name and password, no cluster,
//     maintenance or election API, and a transaction's response carries
//     whether it succeeded, not the responses of its operations.
//
// Use:
//
//	cli, err := etcdlite.New(etcdlite.Config{Endpoints: []string{"http://127.0.0.1:2379"}})
//	if err != nil {
//		return err
//	}
//	defer cli.Close()
//	resp, err := cli.Get(ctx, "/strait/v1/", etcdlite.WithPrefix(), etcdlite.WithLimit(500))
package etcdlite
