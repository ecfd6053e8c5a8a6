package check

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// clockSkew is how far in the future a gateway's started_at may be before
// the record is suspect: more is a wrong clock on the gateway's host or
// here.
const clockSkew = time.Minute

// staleRecords looks for stale or conflicting gateway records of one
// cluster, without touching the network:
//
//   - two records advertising the same ingress, egress or admin address
//     (egress and admin addresses on an unspecified or loopback host do
//     not count, see podLocal):
//     when their started_at differ, the older is stale (a gateway that
//     restarted under another ID while its old record waits for its lease
//     to expire); otherwise they conflict (replicas behind one load
//     balancer share an ingress address, but not an admin one);
//   - a record without started_at, or with one in the future.
//
// Each finding is a Warn naming both records where there are two. Records
// are keyed by cluster and ID, so two records with the same ID cannot
// exist in one keyspace.
func staleRecords(gws []*straitv1.Gateway, now time.Time) []Result {
	gws = slices.Clone(gws)
	slices.SortFunc(gws, func(a, b *straitv1.Gateway) int { return cmpString(a.GetId(), b.GetId()) })
	var out []Result
	add := func(gw *straitv1.Gateway, msg, hint string) {
		out = append(out, Result{Category: CategoryGateways, Check: gw.GetCluster() + "/" + gw.GetId(),
			Cluster: gw.GetCluster(), Gateway: gw.GetId(), Status: Warn, Message: msg, Hint: hint})
	}
	for _, gw := range gws {
		switch ts := gw.GetStartedAt(); {
		case ts == nil:
			add(gw, fmt.Sprintf("gateway %s of %s: record has no started_at", gw.GetId(), gw.GetCluster()),
				"every Strait gateway sets it; the record was written by something else or an old version")
		case ts.AsTime().After(now.Add(clockSkew)):
			add(gw, fmt.Sprintf("gateway %s of %s: started_at %s is in the future", gw.GetId(), gw.GetCluster(), ts.AsTime().Format(time.RFC3339)),
				"the clock of the gateway's host or of this host is wrong")
		}
	}
	type field struct {
		name string
		get  func(*straitv1.Gateway) string
	}
	fields := []field{
		{"ingress", (*straitv1.Gateway).GetAddress},
		{"egress", (*straitv1.Gateway).GetEgressAddress},
		{"admin", (*straitv1.Gateway).GetAdminAddress},
	}
	for i, a := range gws {
		for _, b := range gws[i+1:] {
			var shared []string
			onlyIngress := true
			for _, f := range fields {
				if v := f.get(a); v != "" && v == f.get(b) && (f.name == "ingress" || !podLocal(v)) {
					shared = append(shared, fmt.Sprintf("%s %s", f.name, v))
					onlyIngress = onlyIngress && f.name == "ingress"
				}
			}
			if len(shared) == 0 {
				continue
			}
			old, cur := a, b
			if b.GetStartedAt().AsTime().Before(a.GetStartedAt().AsTime()) {
				old, cur = b, a
			}
			// Replicas behind one load balancer share only the ingress.
			switch {
			case !onlyIngress && a.GetStartedAt() != nil && b.GetStartedAt() != nil && !a.GetStartedAt().AsTime().Equal(b.GetStartedAt().AsTime()):
				add(old, fmt.Sprintf("gateway %s of %s is probably stale: it shares %s with %s, which started later (%s > %s)",
					old.GetId(), old.GetCluster(), joinAnd(shared), cur.GetId(),
					cur.GetStartedAt().AsTime().Format(time.RFC3339), old.GetStartedAt().AsTime().Format(time.RFC3339)),
					"a gateway restarted under a new ID while the old record waits for its lease to expire; it goes within the lease TTL, or delete it (etcdctl) if it stays")
			case onlyIngress:
				add(b, fmt.Sprintf("gateways %s and %s of %s advertise the same ingress address %s", a.GetId(), b.GetId(), a.GetCluster(), a.GetAddress()),
					"unless they are replicas behind one load balancer, one record is stale or misconfigured")
			default:
				add(b, fmt.Sprintf("gateways %s and %s of %s conflict: they share %s", a.GetId(), b.GetId(), a.GetCluster(), joinAnd(shared)),
					"two gateways cannot listen on one egress or admin address: one record is stale or misconfigured")
			}
		}
	}
	return out
}

// podLocal reports whether addr's host is unspecified or loopback: an
// admin or egress address written from the listener (":9901" registers as
// "[::]:9901") is the same in every replica's pod, so sharing one proves
// nothing.
func podLocal(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && (ip.IsUnspecified() || ip.IsLoopback())
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func joinAnd(s []string) string {
	switch len(s) {
	case 0:
		return ""
	case 1:
		return s[0]
	}
	out := s[0]
	for _, x := range s[1 : len(s)-1] {
		out += ", " + x
	}
	return out + " and " + s[len(s)-1]
}
