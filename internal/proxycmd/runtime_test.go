package proxycmd

import (
	"runtime"
	"testing"
)

// The sidecar's runtime defaults: one P unless GOMAXPROCS says otherwise,
// and heap profiling only when the admin server serves the profiles.
func TestApplyRuntimeDefaults(t *testing.T) {
	procs, rate := runtime.GOMAXPROCS(0), runtime.MemProfileRate
	t.Cleanup(func() {
		runtime.GOMAXPROCS(procs)
		runtime.MemProfileRate = rate
	})
	for _, tt := range []struct {
		name             string
		env              string
		pprof            bool
		wantProcs        int
		keepsHeapProfile bool
	}{
		{name: "defaults", wantProcs: 1},
		{name: "pprof", pprof: true, wantProcs: 1, keepsHeapProfile: true},
		{name: "GOMAXPROCS set", env: "3", wantProcs: 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("GOMAXPROCS", tt.env)
			runtime.GOMAXPROCS(3)
			runtime.MemProfileRate = 512 << 10
			applyRuntimeDefaults(tt.pprof)
			if got := runtime.GOMAXPROCS(0); got != tt.wantProcs {
				t.Errorf("GOMAXPROCS %d, want %d", got, tt.wantProcs)
			}
			if got := runtime.MemProfileRate; (got != 0) != tt.keepsHeapProfile {
				t.Errorf("MemProfileRate %d with pprof %v", got, tt.pprof)
			}
		})
	}
}
