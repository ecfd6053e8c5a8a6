package netns

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"
)

// RequireRoot skips the test when it cannot manage network namespaces (not
// root, or no `ip`), or fails it when the environment variable CI is "true",
// so that CI never silently skips the end-to-end suite.
func RequireRoot(t testing.TB) {
	t.Helper()
	reason := ""
	if os.Geteuid() != 0 {
		reason = "needs root to create network namespaces (run as root: sudo go test ...)"
	} else if _, err := exec.LookPath("ip"); err != nil {
		reason = "needs iproute2's ip command (apt-get install iproute2)"
	}
	if reason == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("e2e: %s; CI=true, so this is a failure, not a skip", reason)
	}
	t.Skipf("e2e: %s; skipped (set CI=true to make this a failure)", reason)
}

// BuildT builds a topology for a test: it calls RequireRoot, sweeps
// topologies that crashed runs left behind, builds spec, and closes the
// topology when the test ends, also when it fails. Process logs go to a new
// directory under os.TempDir() (unless spec.LogDir is set), which is removed
// when the test passes and named in the test's log when it fails.
func BuildT(t testing.TB, spec Spec) *Topology {
	t.Helper()
	RequireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if swept, err := SweepStale(ctx); err != nil {
		t.Logf("sweeping stale topologies: %v", err)
	} else if len(swept) > 0 {
		t.Logf("swept stale topologies %v", swept)
	}
	ownLogs := spec.LogDir == ""
	topo, err := Build(ctx, spec)
	if err != nil {
		t.Fatalf("building topology: %v", err)
	}
	t.Cleanup(func() {
		if err := topo.Close(); err != nil {
			t.Errorf("closing topology: %v", err)
		}
		if t.Failed() {
			t.Logf("process logs of the failed test are kept in %s", topo.LogDir())
		} else if ownLogs {
			_ = os.RemoveAll(topo.LogDir())
		}
	})
	return topo
}
