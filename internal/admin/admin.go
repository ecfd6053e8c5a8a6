package admin

import (
	"cmp"
	"fmt"
	"net/http"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"time"

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

// HandlePprof serves the Go profiles under /debug/pprof/ on mux: an index,
// every runtime/pprof profile by name (/debug/pprof/heap, goroutine, ...;
// ?debug=1 or 2 for text, ?gc=1 to collect garbage before a heap profile)
// and a CPU profile (/debug/pprof/profile?seconds=N, default 30, at most
// 300). They expose the process's memory and code: serve them only where
// the admin address is private, and only when asked to. It uses
// runtime/pprof alone, not net/http/pprof, which would register on
// http.DefaultServeMux and weigh on the per-pod proxy's footprint.
func HandlePprof(mux *http.ServeMux) {
	mux.HandleFunc("GET /debug/pprof/{$}", pprofIndex)
	mux.HandleFunc("GET /debug/pprof/profile", pprofCPU)
	mux.HandleFunc("GET /debug/pprof/{name}", pprofNamed)
}

func pprofIndex(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(w, "profile: CPU, ?seconds=N")
	for _, p := range pprof.Profiles() {
		fmt.Fprintf(w, "%s: %d\n", p.Name(), p.Count())
	}
}

func pprofNamed(w http.ResponseWriter, r *http.Request) {
	p := pprof.Lookup(r.PathValue("name"))
	if p == nil {
		http.NotFound(w, r)
		return
	}
	debug, _ := strconv.Atoi(r.FormValue("debug"))
	if p.Name() == "heap" && r.FormValue("gc") != "" {
		runtime.GC()
	}
	setProfileHeaders(w, p.Name(), debug)
	_ = p.WriteTo(w, debug)
}

func pprofCPU(w http.ResponseWriter, r *http.Request) {
	sec, err := strconv.Atoi(r.FormValue("seconds"))
	if err != nil || sec <= 0 {
		sec = 30
	}
	sec = min(sec, 300)
	setProfileHeaders(w, "profile", 0)
	if err := pprof.StartCPUProfile(w); err != nil {
		w.Header().Del("Content-Disposition")
		http.Error(w, "CPU profile: "+err.Error(), http.StatusConflict)
		return
	}
	select {
	case <-time.After(time.Duration(sec) * time.Second):
	case <-r.Context().Done():
	}
	pprof.StopCPUProfile()
}

func setProfileHeaders(w http.ResponseWriter, name string, debug int) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if debug > 0 {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
}
