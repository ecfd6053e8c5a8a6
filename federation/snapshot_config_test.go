package federation

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// TestConfigClusterOverlay: a cluster's configuration overrides the global
// one field by field, and a list it sets replaces the global list.
func TestConfigClusterOverlay(t *testing.T) {
	global := &straitv1.GatewayConfig{
		DialTimeout: durationpb.New(time.Second),
		IdleTimeout: durationpb.New(5 * time.Second),
		Failover:    &straitv1.FailoverPolicy{RegionOrder: []string{"us-west", "us-central"}, ConsecutiveFailures: 5},
	}
	east := &straitv1.GatewayConfig{
		IdleTimeout: durationpb.New(2 * time.Second),
		Failover:    &straitv1.FailoverPolicy{RegionOrder: []string{"us-central", "us-west"}},
	}
	snap := NewSnapshot(1, []Record{
		{Info: KeyInfo{Kind: KindConfig}, Message: global},
		{Info: KeyInfo{Kind: KindConfig, Cluster: "east"}, Message: east},
	})
	tests := []struct {
		cluster     string
		order       []string
		idle, dial  time.Duration
		consecutive uint32
	}{
		{"east", []string{"us-central", "us-west"}, 2 * time.Second, time.Second, 5},
		{"west", []string{"us-west", "us-central"}, 5 * time.Second, time.Second, 5},
	}
	for _, tc := range tests {
		got := snap.Config(tc.cluster)
		if !slices.Equal(got.GetFailover().GetRegionOrder(), tc.order) {
			t.Errorf("%s: region order %v, want %v", tc.cluster, got.GetFailover().GetRegionOrder(), tc.order)
		}
		if got.GetIdleTimeout().AsDuration() != tc.idle || got.GetDialTimeout().AsDuration() != tc.dial {
			t.Errorf("%s: idle %s dial %s, want %s %s", tc.cluster, got.GetIdleTimeout().AsDuration(), got.GetDialTimeout().AsDuration(), tc.idle, tc.dial)
		}
		if got.GetFailover().GetConsecutiveFailures() != tc.consecutive {
			t.Errorf("%s: consecutive failures %d, want %d", tc.cluster, got.GetFailover().GetConsecutiveFailures(), tc.consecutive)
		}
	}
	if len(global.GetFailover().GetRegionOrder()) != 2 || east.GetIdleTimeout().AsDuration() != 2*time.Second {
		t.Error("Config modified the stored records")
	}
}

// TestConfigWithoutKeyInfo: NewSnapshot takes a GatewayConfig record
// without key info as the global configuration, as it always has (the
// gateway's tests build their snapshots that way; c01ef6d dropped such
// records as of an unknown kind, and every live setting was lost).
func TestConfigWithoutKeyInfo(t *testing.T) {
	snap := NewSnapshot(1, []Record{{Message: &straitv1.GatewayConfig{DialTimeout: durationpb.New(150 * time.Millisecond)}}})
	if got := snap.Config("east").GetDialTimeout().AsDuration(); got != 150*time.Millisecond {
		t.Fatalf("dial timeout %s, want the record's 150ms", got)
	}
}

func TestBelowHealthy(t *testing.T) {
	ep := func(id string, ready bool) Record {
		return Record{Message: &straitv1.Endpoint{Cluster: "b", Namespace: "ns", Service: "s", Id: id, Ready: ready, SpiffeId: "spiffe://b.example/ns/ns/sa/s"}}
	}
	snap := NewSnapshot(1, []Record{ep("1", true), ep("2", false), ep("3", false), ep("4", true)})
	key := ServiceKey{Namespace: "ns", Name: "s"}
	tests := []struct {
		cluster string
		min     uint32
		want    bool
	}{
		{"b", 0, false},
		{"b", 50, false}, // 2 of 4 is exactly 50%
		{"b", 51, true},
		{"c", 100, false}, // no endpoint records: nothing to judge
	}
	for _, tc := range tests {
		if got := snap.BelowHealthy(tc.cluster, key, tc.min); got != tc.want {
			t.Errorf("BelowHealthy(%s, %d) = %v, want %v", tc.cluster, tc.min, got, tc.want)
		}
	}
}
