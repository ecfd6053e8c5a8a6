package gateway

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"slices"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/strait-mesh/strait/internal/admin"
)

// adminHandler serves /metrics (the gateway's metrics with the Go runtime
// and process metrics), /healthz (the process is up), /readyz (the gateway
// accepts new streams: ready and not draining), /probe (a signed path
// probe to a remote cluster, see Probe), /links (the measures of the
// links to remote gateways, see Links), /topology (a live page of the
// federation, polling /topology.json, see Topology), /trust (the roots
// the gateway verifies each federated trust domain with, see Trust) and,
// with Config.Pprof,
// /debug/pprof/.
func (g *Gateway) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", admin.MetricsHandler(g.gatherer))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if g.Draining() {
			http.Error(w, "draining", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.HandleFunc("GET /probe", g.handleProbe)
	mux.HandleFunc("GET /topology", g.handleTopologyPage)
	mux.HandleFunc("GET /topology.json", g.handleTopology)
	mux.HandleFunc("GET /links", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(g.Links())
	})
	mux.HandleFunc("GET /trust", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(g.Trust())
	})
	if g.cfg.Pprof {
		admin.HandlePprof(mux)
	}
	return mux
}

func (g *Gateway) serveAdmin() error {
	if err := g.admin.Serve(g.adminLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// TrustView is what a gateway trusts, served on /trust: for every trust
// domain of the federation's clusters, the X.509 roots its Bundles source
// gives, which are the roots it verifies that domain's gateways with.
// `strait check` compares them with the bundles in etcd.
type TrustView struct {
	Cluster string `json:"cluster"`
	Gateway string `json:"gateway"`
	// Revision is the etcd revision of the gateway's federation view.
	Revision int64             `json:"revision"`
	Domains  []TrustDomainView `json:"domains"`
}

// TrustDomainView is one trust domain in a TrustView.
type TrustDomainView struct {
	TrustDomain string `json:"trustDomain"`
	// Clusters are the clusters of the trust domain, sorted.
	Clusters []string `json:"clusters"`
	// Sequence is the sequence of the domain's bundle record in the
	// gateway's view of etcd; zero when it has none.
	Sequence uint64 `json:"sequence"`
	// Roots are the RootFingerprint of each root the gateway trusts for
	// the domain, sorted; empty when it trusts none.
	Roots []string `json:"roots"`
	// Error says why Roots is empty, when it is.
	Error string `json:"error,omitempty"`
}

// RootFingerprint identifies a root certificate: the hex SHA-256 of its
// DER.
func RootFingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// Trust reports the roots the gateway trusts for every trust domain of
// the federation's clusters (see TrustView).
func (g *Gateway) Trust() TrustView {
	snap := g.cfg.Snapshots.Snapshot()
	v := TrustView{Cluster: g.cfg.Cluster, Gateway: g.cfg.ID, Revision: snap.Revision(), Domains: []TrustDomainView{}}
	byTD := map[string]*TrustDomainView{}
	for _, c := range snap.Clusters() {
		name := snap.TrustDomain(c)
		if name == "" {
			continue
		}
		d := byTD[name]
		if d == nil {
			d = &TrustDomainView{TrustDomain: name, Clusters: []string{}, Roots: []string{}}
			byTD[name] = d
		}
		d.Clusters = append(d.Clusters, c)
	}
	for _, d := range byTD {
		slices.Sort(d.Clusters)
		td, err := spiffeid.TrustDomainFromString(d.TrustDomain)
		if err != nil {
			d.Error = err.Error()
			continue
		}
		d.Sequence = snap.Bundle(td.Name()).GetSequence()
		b, err := g.cfg.Bundles.GetX509BundleForTrustDomain(td)
		if err != nil {
			d.Error = err.Error()
			continue
		}
		for _, root := range b.X509Authorities() {
			d.Roots = append(d.Roots, RootFingerprint(root))
		}
		slices.Sort(d.Roots)
		if len(d.Roots) == 0 {
			d.Error = "the bundle holds no X.509 root"
		}
	}
	for _, d := range byTD {
		v.Domains = append(v.Domains, *d)
	}
	slices.SortFunc(v.Domains, func(a, b TrustDomainView) int {
		switch {
		case a.TrustDomain < b.TrustDomain:
			return -1
		case a.TrustDomain > b.TrustDomain:
			return 1
		}
		return 0
	})
	return v
}
