package gateway

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/strait-mesh/strait/internal/admin"
)

// adminHandler serves /metrics (the gateway's metrics with the Go runtime
// and process metrics), /healthz (the process is up), /readyz (the gateway
// accepts new streams: ready and not draining), /probe (a signed path
// probe to a remote cluster, see Probe), /links (the measures of the
// links to remote gateways, see Links), /topology (a live page of the
// federation, polling /topology.json, see Topology) and, with Config.Pprof,
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
