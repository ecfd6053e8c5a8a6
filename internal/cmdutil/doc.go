// Package cmdutil is what the commands that run a Strait process (`strait
// gateway`, `strait proxy` and the sidecar binary `strait-proxy`) share: the
// sections of their config files, the process' identity (SVIDs from the
// built-in CA or a SPIRE agent) and the node that watches etcd beside the
// main component. It imports neither the embedded etcd server nor the
// Kubernetes client, so that the sidecar binary stays small.
//
//	var f struct {
//		Cluster  string               `json:"cluster"`
//		Etcd     cmdutil.EtcdFile     `json:"etcd"`
//		Identity cmdutil.IdentityFile `json:"identity"`
//	}
//	if err := cmdutil.ReadFile(path, &f); err != nil { ... }
//	id, err := cmdutil.NewIdentity(f.Identity, workloadID, log, reg)
//	n, closeEtcd, err := cmdutil.NewNode(f.Cluster, f.Etcd, f.Identity, id, "", log, reg)
package cmdutil
