package admin

import (
	"cmp"
	"net/http"
	"net/http/pprof"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
)

// MetricsHandler serves what g gathers, plus the Go runtime (go_*) and
// process (process_*) metrics of this process for every family g does not
// already have: a component's registry need not register them, and a
// registry that does is not served twice.
func MetricsHandler(g prometheus.Gatherer) http.Handler {
	rt := prometheus.NewRegistry()
	rt.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return promhttp.HandlerFor(withRuntime{main: g, runtime: rt}, promhttp.HandlerOpts{})
}

// withRuntime gathers main, then the families of runtime that main lacks.
type withRuntime struct {
	main, runtime prometheus.Gatherer
}

func (w withRuntime) Gather() ([]*dto.MetricFamily, error) {
	fams, err := w.main.Gather()
	if err != nil && len(fams) == 0 {
		return nil, err
	}
	rt, rerr := w.runtime.Gather()
	have := make(map[string]bool, len(fams))
	for _, f := range fams {
		have[f.GetName()] = true
	}
	for _, f := range rt {
		if !have[f.GetName()] {
			fams = append(fams, f)
		}
	}
	slices.SortFunc(fams, func(a, b *dto.MetricFamily) int { return cmp.Compare(a.GetName(), b.GetName()) })
	if err == nil {
		err = rerr
	}
	return fams, err
}

// HandlePprof serves the net/http/pprof profiles under /debug/pprof/ on
// mux. They expose the process's memory and code: serve them only where
// the admin address is private, and only when asked to.
func HandlePprof(mux *http.ServeMux) {
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
}
