package proxycmd

import (
	"os"
	"runtime"
)

// sidecarGOMAXPROCS is the proxy's GOMAXPROCS unless the GOMAXPROCS
// environment variable sets one. One P measured 0.4-0.6 MB less anonymous
// memory than two at 1000 requests per second (fewer threads, stacks and
// per-P caches) at the same CPU time per request; one core carries several
// Gbit/s of TLS, more than a sidecar's workload usually sends.
const sidecarGOMAXPROCS = 1

// runtimeDefaultsHelp documents applyRuntimeDefaults in the command's help.
const runtimeDefaultsHelp = `Go runtime defaults for a sidecar: GOMAXPROCS=1 unless the GOMAXPROCS
environment variable is set (raise it for workloads that need more than one
core of TLS). GOGC and GOMEMLIMIT keep Go's defaults (100, none): a lower
GOGC measured no smaller resident set (the live heap is small and the
minimum heap goal rules), and a memory limit near the proxy's few MB makes
the collector run continuously; set them to suit a pod's limits. Heap
profiling is off unless --pprof serves the profiles.`

// applyRuntimeDefaults sets the Go runtime's defaults for a sidecar; pprof
// tells whether the admin server serves the Go profiles.
func applyRuntimeDefaults(pprof bool) {
	if os.Getenv("GOMAXPROCS") == "" && runtime.GOMAXPROCS(0) > sidecarGOMAXPROCS {
		runtime.GOMAXPROCS(sidecarGOMAXPROCS)
	}
	if !pprof {
		// No one can read the heap profile, whose sampling only grows the
		// process: a 1.4 MB hash table of allocation stacks (a page made
		// resident per sampled stack) and a record per stack.
		runtime.MemProfileRate = 0
	}
}
