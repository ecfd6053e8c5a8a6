package check

import (
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/strait-mesh/strait/federation"
	"github.com/strait-mesh/strait/trust"
)

// trust checks every cluster's bundle and returns the set of the bundles
// that parse, which every later check verifies against.
func (r *runner) trust(snap *federation.Snapshot, rep *Report) *x509bundle.Set {
	set := x509bundle.NewSet()
	for _, rec := range snap.Bundles() {
		if b, err := trust.BundleFromProto(rec); err == nil {
			set.Add(b)
		}
	}
	for _, c := range snap.Clusters() {
		res := r.clusterBundle(snap, c, set)
		res.Category, res.Check, res.Cluster = CategoryTrust, c, c
		rep.Results = append(rep.Results, res)
	}
	return set
}

func (r *runner) clusterBundle(snap *federation.Snapshot, cluster string, set *x509bundle.Set) Result {
	tdName := snap.TrustDomain(cluster)
	td, err := spiffeid.TrustDomainFromString(tdName)
	if err != nil {
		return Result{Status: Fail, Message: fmt.Sprintf("cluster %s names no valid trust domain (%q)", cluster, tdName),
			Hint: "its gateway and endpoint records carry the trust domain; check their writers"}
	}
	rec := snap.Bundle(td.Name())
	if rec == nil {
		return Result{Status: Fail, Message: fmt.Sprintf("cluster %s: no valid trust bundle for %s in etcd", cluster, td),
			Hint: fmt.Sprintf("the bundle publisher of %s (its gateway with the built-in CA, or spire-sync) must run; its key is %s", cluster, r.cfg.Keyspace.Bundle(td.Name()))}
	}
	b, ok := set.Get(td)
	if !ok || len(b.X509Authorities()) == 0 {
		return Result{Status: Fail, Message: fmt.Sprintf("cluster %s: the bundle of %s does not parse or holds no X.509 root", cluster, td),
			Hint: "the publisher rewrites a damaged bundle; if it persists, check the publisher's logs"}
	}
	var earliest time.Time
	for _, a := range b.X509Authorities() {
		if earliest.IsZero() || a.NotAfter.Before(earliest) {
			earliest = a.NotAfter
		}
	}
	status, msg, hint := expiry(earliest, r.cfg.Now(), r.cfg.ExpiryWarning, "rotate the trust domain's CA and publish the new roots before the old ones expire")
	res := Result{Status: status, Hint: hint,
		Message: fmt.Sprintf("%s: %d roots, sequence %d; earliest root %s; the checks '<cluster> trusts %s' compare them with what each gateway trusts", td, len(b.X509Authorities()), rec.GetSequence(), msg, cluster)}
	if rec.GetSequence() == 0 && res.Status == OK {
		res.Status, res.Hint = Warn, "a bundle with sequence 0 is overwritten by any publisher; publish through strait"
	}
	return res
}
