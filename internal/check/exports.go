package check

import (
	"fmt"

	"github.com/strait-mesh/strait/federation"
)

// exports checks that every export has a live gateway and ready endpoints
// in its cluster, that its consumers parse, and reports port conflicts.
func (r *runner) exports(snap *federation.Snapshot) []Result {
	var out []Result
	for _, key := range snap.Services() {
		svc, _ := snap.Service(key)
		for _, e := range snap.Exports(key) {
			c := e.GetCluster()
			res := Result{Category: CategoryExports, Check: fmt.Sprintf("%s from %s", key, c), Cluster: c}
			n := len(snap.ReadyEndpoints(c, key))
			var bad []string
			for _, cons := range e.GetConsumers() {
				if err := federation.ValidateConsumer(cons); err != nil {
					bad = append(bad, err.Error())
				}
			}
			switch {
			case len(bad) > 0:
				res.Status, res.Message = Fail, fmt.Sprintf("consumers do not parse: %v", bad)
				res.Hint = "a consumer is a SPIFFE ID or a trust domain as spiffe://<trust-domain>"
			case !snap.ClusterAlive(c):
				res.Status, res.Message = Fail, fmt.Sprintf("exported by %s, which has no live gateway", c)
				res.Hint = "start the cluster's gateway; callers fail over to other clusters meanwhile"
			case n == 0:
				res.Status, res.Message = Fail, fmt.Sprintf("no ready endpoint in %s", c)
				res.Hint = "the service's proxies register endpoints once their health check passes: check its pods and proxies"
			default:
				res.Status, res.Message = OK, fmt.Sprintf("%d ready endpoints in %s, %d consumers", n, c, len(e.GetConsumers()))
			}
			for _, cf := range svc.Conflicts {
				if cf.Cluster == c && res.Status == OK {
					res.Status, res.Message = Warn, fmt.Sprintf("port conflict: %s; the oldest export's ports win", cf.Reason)
					res.Hint = "make every cluster export the same ports"
				}
			}
			out = append(out, res)
		}
	}
	return out
}
