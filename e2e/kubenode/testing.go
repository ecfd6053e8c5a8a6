package kubenode

import (
	"context"
	"testing"
	"time"

	"github.com/strait-mesh/strait/e2e/netns"
)

// StartT starts a node for a test and closes it when the test ends, also
// when it fails. It calls netns.RequireRoot (a skip, or a failure when
// CI=true) and fails the test when the node does not start; binaries are
// built first when cfg.BinDir is empty, which can take minutes when cold.
func StartT(t testing.TB, cfg Config) *Node {
	t.Helper()
	netns.RequireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	n, err := Start(ctx, cfg)
	if err != nil {
		t.Fatalf("starting node: %v", err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("closing node %s: %v", n.Name(), err)
		}
	})
	return n
}
