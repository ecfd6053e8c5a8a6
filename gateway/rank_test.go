package gateway

import (
	"testing"
	"time"
)

// TestPeerRank: a peer without a connection goes after the others while
// it is in backoff or redialed after a lost connection, but not during
// its first dial (a failover policy change would otherwise send the
// streams of that dial to the cluster it replaces).
func TestPeerRank(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name        string
		dialing     bool
		connected   bool
		failures    int
		retryAt     time.Time
		drained     bool
		wantPenalty int
	}{
		{name: "never dialed"},
		{name: "first dial", dialing: true},
		{name: "redial after a lost connection", dialing: true, connected: true, wantPenalty: 1},
		{name: "dial after failures", dialing: true, failures: 1, wantPenalty: 1},
		{name: "in backoff", failures: 2, retryAt: now.Add(time.Second), wantPenalty: 1},
		{name: "backoff over", failures: 2, retryAt: now.Add(-time.Second)},
		{name: "lost, not yet redialed", connected: true},
		{name: "drained", drained: true, wantPenalty: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pr := &peer{shards: make([]shard, 2), connected: tt.connected, failures: tt.failures, retryAt: tt.retryAt, drained: tt.drained}
			pr.shards[1].dialing = tt.dialing
			if got := pr.rank(now).penalty; got != tt.wantPenalty {
				t.Errorf("penalty %d, want %d", got, tt.wantPenalty)
			}
		})
	}
}
