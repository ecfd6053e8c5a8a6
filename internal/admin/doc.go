// Package admin holds what every Strait admin server serves beside its
// component's own endpoints: Prometheus metrics that always include the Go
// runtime and process collectors, and the pprof profiles when an operator
// turns them on.
//
//	mux := http.NewServeMux()
//	mux.Handle("GET /metrics", admin.MetricsHandler(reg))
//	if cfg.Pprof {
//		admin.HandlePprof(mux)
//	}
package admin
