// Package embedded runs etcd inside the Strait process
// (go.etcd.io/etcd/server/v3/embed): the default control plane of
// `strait dev` and of tests. It can run one member or every member of a
// small cluster in one process.
package embedded
