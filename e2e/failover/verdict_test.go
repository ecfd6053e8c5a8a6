package failover

import (
	"fmt"
	"testing"
	"time"

	"github.com/strait-mesh/strait/e2e/load"
)

// TestClassify checks the verdict on a synthetic history, without root: a
// failure is excused only on evidence (its key journaled by an app, or the
// client proxy's log of a relay after a completed handshake with bytes
// out), whenever the request started; the excused are capped at rate ×
// (steady p99 + the fault's own duration). The rule it replaces excused
// every failure of a request started before the fault.
func TestClassify(t *testing.T) {
	fault := time.Unix(1000, 0)
	// One second of steady load before the fault: 200 requests of 100 ms.
	var steady load.History
	for i := range 200 {
		start := fault.Add(-time.Second + time.Duration(i)*5*time.Millisecond)
		if start.Add(100 * time.Millisecond).After(fault) {
			break
		}
		steady = append(steady, load.Record{Key: fmt.Sprintf("ok-%d", i), Start: start, Latency: 100 * time.Millisecond, Cluster: "west"})
	}
	failed := func(key string, startedBefore time.Duration) load.Record {
		return load.Record{Key: key, Start: fault.Add(-startedBefore), Latency: time.Second, Kind: load.KindReset, Local: "127.0.0.1:" + key}
	}
	tests := []struct {
		name                     string
		fails                    load.History
		keys                     map[string]int
		conns                    map[string]proxyConn
		delivered, sent, counted int
		wantCapFailure, wantDups bool
	}{
		{name: "delivered before the fault: excused", fails: load.History{failed("a", 50*time.Millisecond)},
			keys: map[string]int{"a": 1}, delivered: 1},
		{name: "relayed after the handshake: excused", fails: load.History{failed("b", 50*time.Millisecond)},
			conns: map[string]proxyConn{"b": {BytesOut: 120}}, sent: 1},
		{name: "started before the fault but never relayed: counted (the old rule excused it)",
			fails: load.History{failed("c", 50*time.Millisecond)}, counted: 1},
		{name: "connection closed with nothing sent: counted", fails: load.History{failed("d", 50*time.Millisecond)},
			conns: map[string]proxyConn{"d": {BytesOut: 0}}, counted: 1},
		{name: "more excused than could be in flight", fails: func() load.History {
			var h load.History
			for i := range 30 {
				h = append(h, failed(fmt.Sprintf("e%d", i), 50*time.Millisecond))
			}
			return h
		}(), keys: func() map[string]int {
			m := map[string]int{}
			for i := range 30 {
				m[fmt.Sprintf("e%d", i)] = 1
			}
			return m
		}(), delivered: 30, wantCapFailure: true},
		{name: "a key run twice", fails: load.History{failed("f", 50*time.Millisecond)}, keys: map[string]int{"f": 2},
			delivered: 1, wantDups: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := append(append(load.History{}, steady...), tt.fails...)
			v := classify(h, fault, 5*time.Millisecond, tt.keys, tt.conns)
			if len(v.delivered) != tt.delivered || len(v.sent) != tt.sent || len(v.counted) != tt.counted {
				t.Errorf("delivered %d, sent %d, counted %d; want %d, %d, %d", len(v.delivered), len(v.sent), len(v.counted),
					tt.delivered, tt.sent, tt.counted)
			}
			// Steady p99 100 ms + 5 ms: 200/s × 105 ms = 21.
			if v.cap != 21 {
				t.Errorf("cap %d (in flight %s), want 21", v.cap, v.inFlight)
			}
			if got := v.excused() > v.cap; got != tt.wantCapFailure {
				t.Errorf("excused %d over cap %d: %v, want %v", v.excused(), v.cap, got, tt.wantCapFailure)
			}
			if got := len(v.dups) > 0; got != tt.wantDups {
				t.Errorf("dups %v", v.dups)
			}
		})
	}
}
