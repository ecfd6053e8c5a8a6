// Package devclustertest runs a dev federation (internal/devcluster) for the
// tests of other packages: Start runs it until the test ends and returns
// once it is ready.
//
//	f := devclustertest.Start(t, devcluster.DefaultConfig(t.TempDir()))
package devclustertest

import (
	"context"
	"testing"
	"time"

	"github.com/strait-mesh/strait/internal/devcluster"
)

// Start runs cfg's federation until the test ends, failing the test if it
// does not become ready within 90 s or stop within 20 s of the end, or if
// Run returns an error.
func Start(t testing.TB, cfg devcluster.Config) *devcluster.Federation {
	t.Helper()
	f, err := devcluster.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("federation Run: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("federation did not stop within 20s")
		}
	})
	select {
	case <-f.Ready():
	case err := <-done:
		t.Fatalf("federation ended before ready: %v", err)
	case <-time.After(90 * time.Second):
		t.Fatal("federation not ready after 90s")
	}
	return f
}
