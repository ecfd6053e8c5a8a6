package scale

import (
	"testing"
	"time"
)

// TestConfigEtcdTiming checks the defaults of the members' raft timing and
// that the harness refuses timings etcd would refuse or quietly change
// (an election timeout under 5 heartbeats; a lease TTL under etcd's
// minimum of 1.5 election timeouts, which etcd would grant longer).
func TestConfigEtcdTiming(t *testing.T) {
	for _, tt := range []struct {
		name                string
		heartbeat, election time.Duration
		ttl                 time.Duration
		ok                  bool
	}{
		{name: "defaults", ok: true},
		{name: "etcd's own defaults", heartbeat: 100 * time.Millisecond, election: time.Second, ttl: 2 * time.Second, ok: true},
		{name: "election under 5 heartbeats", heartbeat: 500 * time.Millisecond, election: 2 * time.Second, ttl: 30 * time.Second},
		{name: "TTL under etcd's minimum", heartbeat: 500 * time.Millisecond, election: 5 * time.Second, ttl: 5 * time.Second},
		{name: "default timing, short TTL", ttl: 2 * time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{EtcdHeartbeat: tt.heartbeat, EtcdElectionTimeout: tt.election, LeaseTTL: tt.ttl,
				EtcdBinary: "etcd", Dir: t.TempDir()}
			cfg.populate()
			if tt.heartbeat == 0 && (cfg.EtcdHeartbeat != 500*time.Millisecond || cfg.EtcdElectionTimeout != 5*time.Second) {
				t.Errorf("defaults: heartbeat %s, election timeout %s, want 500ms and 5s", cfg.EtcdHeartbeat, cfg.EtcdElectionTimeout)
			}
			if err := cfg.validate(); (err == nil) != tt.ok {
				t.Errorf("validate() = %v, want ok %v", err, tt.ok)
			}
		})
	}
}
