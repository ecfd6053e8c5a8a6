// Package smoke proves the end-to-end harness without any Strait component:
// two clusters in network namespaces, a plain HTTP server in one, a client in
// the other reaching it through a WAN link with 15 ms one-way delay,
// partitions that fail connections and heals that bring them back, and a
// 3-member etcd cluster that survives the loss of its leader. Its tests need
// root (see netns.RequireRoot).
package smoke
