package check

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/strait-mesh/strait/federation"
	"github.com/strait-mesh/strait/gateway"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// maxTrustView bounds a gateway's /trust answer.
const maxTrustView = 1 << 20

// trustPeers compares, for each ordered pair of clusters (A, B), the
// roots of B's bundle in etcd with the roots each gateway of A reports
// trusting for B's trust domain on its /trust admin endpoint. It is the
// direct form of "every cluster trusts every other's current roots": the
// path checks prove it only for the roots the responders' SVIDs chain to.
func (r *runner) trustPeers(ctx context.Context, snap *federation.Snapshot, bundles *x509bundle.Set) []Result {
	clusters := snap.Clusters()
	type fetched struct {
		gw   *straitv1.Gateway
		view *gateway.TrustView
		err  error
	}
	views := make(map[string][]fetched, len(clusters))
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	if r.cfg.Admin != "" {
		// Only the local gateway, whose records say which it is.
		v, err := r.fetchTrust(ctx, r.cfg.Admin)
		if err == nil && v.Cluster != r.cfg.Cluster {
			err = fmt.Errorf("it is a gateway of %s, not of %s", v.Cluster, r.cfg.Cluster)
		}
		gw := &straitv1.Gateway{Cluster: r.cfg.Cluster, Id: "local", AdminAddress: r.cfg.Admin}
		if err == nil {
			gw.Id = v.Gateway
		}
		views[r.cfg.Cluster] = []fetched{{gw, v, err}}
	}
	for _, c := range clusters {
		if r.cfg.Cluster != "" && (c != r.cfg.Cluster || r.cfg.Admin != "") {
			continue
		}
		for _, gw := range snap.Gateways(c) {
			if gw.GetAdminAddress() == "" {
				continue
			}
			wg.Go(func() {
				v, err := r.fetchTrust(ctx, gw.GetAdminAddress())
				mu.Lock()
				views[c] = append(views[c], fetched{gw, v, err})
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	var out []Result
	for _, a := range clusters {
		if r.cfg.Cluster != "" && a != r.cfg.Cluster {
			continue
		}
		fs := views[a]
		slices.SortFunc(fs, func(x, y fetched) int { return strings.Compare(x.gw.GetId(), y.gw.GetId()) })
		var answered []fetched
		for _, f := range fs {
			if f.err != nil {
				status := Warn
				if r.cfg.Admin != "" {
					// The local gateway was named: not reaching it fails.
					status = Fail
				}
				out = append(out, Result{Category: CategoryTrust, Check: a + "/" + f.gw.GetId() + " /trust", Cluster: a, Gateway: f.gw.GetId(), Status: status,
					Message: fmt.Sprintf("gateway %s of %s: its trust not compared: %v", f.gw.GetId(), a, f.err),
					Hint:    fmt.Sprintf("the admin port %s must answer from here (or run with --cluster %s on its host)", f.gw.GetAdminAddress(), a)})
				continue
			}
			answered = append(answered, f)
		}
		if len(answered) == 0 {
			continue
		}
		for _, b := range clusters {
			if b == a {
				continue
			}
			res := Result{Category: CategoryTrust, Check: a + " trusts " + b, Cluster: a}
			want, seq, ok := currentRoots(snap, b, bundles)
			if !ok {
				// The bundle check of b already failed.
				continue
			}
			var bad, old, good []string
			worst := OK
			for _, f := range answered {
				st, msg := compareRoots(want, seq, snap.TrustDomain(b), f.view)
				switch st {
				case Fail:
					bad = append(bad, fmt.Sprintf("%s %s", f.gw.GetId(), msg))
				case Warn:
					old = append(old, fmt.Sprintf("%s %s", f.gw.GetId(), msg))
				default:
					good = append(good, f.gw.GetId())
				}
				worst = worse(worst, st)
			}
			res.Status = worst
			switch worst {
			case Fail:
				res.Message = fmt.Sprintf("cluster %s does not trust %s's current roots (%s, sequence %d): gateway %s", a, b, snap.TrustDomain(b), seq, strings.Join(bad, "; gateway "))
				res.Hint = fmt.Sprintf("%s's gateways cannot verify %s's gateways issued by the missing roots: check that %s's gateways watch etcd (their logs, strait_federation_* metrics) and restart them if their view is stuck", a, b, a)
			case Warn:
				res.Message = fmt.Sprintf("cluster %s trusts %s's current roots, and more: gateway %s", a, b, strings.Join(old, "; gateway "))
				res.Hint = "roots etcd no longer lists are still trusted: the gateway's view lags a rotation, or its bundle source is not etcd"
			default:
				res.Message = fmt.Sprintf("every gateway of %s that answered (%s) trusts %s's %d current roots (%s, sequence %d)", a, strings.Join(good, ", "), b, len(want), snap.TrustDomain(b), seq)
			}
			out = append(out, res)
		}
	}
	return out
}

// worse returns the worse of two statuses.
func worse(a, b Status) Status {
	rank := map[Status]int{OK: 0, Warn: 1, Fail: 2}
	if rank[b] > rank[a] {
		return b
	}
	return a
}

// currentRoots returns the fingerprints of the roots of cluster's bundle
// in etcd, sorted, and its sequence.
func currentRoots(snap *federation.Snapshot, cluster string, bundles *x509bundle.Set) ([]string, uint64, bool) {
	td, err := spiffeid.TrustDomainFromString(snap.TrustDomain(cluster))
	if err != nil {
		return nil, 0, false
	}
	b, ok := bundles.Get(td)
	if !ok || len(b.X509Authorities()) == 0 {
		return nil, 0, false
	}
	var fps []string
	for _, root := range b.X509Authorities() {
		fps = append(fps, gateway.RootFingerprint(root))
	}
	slices.Sort(fps)
	return fps, snap.Bundle(td.Name()).GetSequence(), true
}

// compareRoots judges what one gateway trusts for trust domain td against
// want, the current roots in etcd (sorted): every current root missing is
// a failure, roots beyond them a warning.
func compareRoots(want []string, seq uint64, td string, v *gateway.TrustView) (Status, string) {
	i := slices.IndexFunc(v.Domains, func(d gateway.TrustDomainView) bool { return d.TrustDomain == td })
	if i < 0 {
		return Fail, fmt.Sprintf("does not know trust domain %s (its view is at revision %d)", td, v.Revision)
	}
	d := v.Domains[i]
	if len(d.Roots) == 0 {
		return Fail, fmt.Sprintf("holds no root for %s: %s", td, d.Error)
	}
	var missing, extra int
	for _, w := range want {
		if _, found := slices.BinarySearch(d.Roots, w); !found {
			missing++
		}
	}
	for _, h := range d.Roots {
		if _, found := slices.BinarySearch(want, h); !found {
			extra++
		}
	}
	switch {
	case missing > 0:
		return Fail, fmt.Sprintf("holds an old bundle: lacks %d of %d current roots (sequence %d in its view, %d in etcd)", missing, len(want), d.Sequence, seq)
	case extra > 0:
		return Warn, fmt.Sprintf("also trusts %d root(s) not in etcd's bundle (sequence %d in its view, %d in etcd)", extra, d.Sequence, seq)
	}
	return OK, ""
}

// fetchTrust reads a gateway's /trust.
func (r *runner) fetchTrust(ctx context.Context, admin string) (*gateway.TrustView, error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.HandshakeTimeout)
	defer cancel()
	u := (&url.URL{Scheme: "http", Host: admin, Path: "/trust"}).String()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := r.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxTrustView))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	var v gateway.TrustView
	if err := json.Unmarshal(body, &v); err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	return &v, nil
}
