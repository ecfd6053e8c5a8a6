package devcluster

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/strait-mesh/strait/federation"
	"github.com/strait-mesh/strait/trust"
)

// recoverWithin is how soon cross-cluster traffic must recover after a
// trust bundle key is damaged (issue 12, weakness 3).
const recoverWithin = 5 * time.Second

// probe is one cross-cluster request of the background traffic.
type probe struct {
	start time.Time
	err   error
}

// traffic sends small cross-cluster echo requests back to back until
// stopped, and keeps every outcome.
type traffic struct {
	mu     sync.Mutex
	probes []probe
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once
}

func startTraffic(addr string) *traffic {
	tr := &traffic{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(tr.done)
		for i := 0; ; i++ {
			select {
			case <-tr.stop:
				return
			default:
			}
			start := time.Now()
			want := fmt.Appendf(nil, "probe %d", i)
			got, err := roundTripWithin(addr, want, 3*time.Second)
			if err == nil && !bytes.Equal(got, want) {
				err = fmt.Errorf("echo returned %q, want %q", got, want)
			}
			tr.mu.Lock()
			tr.probes = append(tr.probes, probe{start: start, err: err})
			tr.mu.Unlock()
			if err != nil {
				// A failed request returns at once; do not spin.
				select {
				case <-tr.stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
		}
	}()
	return tr
}

func (tr *traffic) halt() []probe {
	tr.once.Do(func() { close(tr.stop) })
	<-tr.done
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return append([]probe(nil), tr.probes...)
}

// since returns the probes started at or after t.
func (tr *traffic) since(t time.Time) []probe {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var out []probe
	for _, p := range tr.probes {
		if !p.start.Before(t) {
			out = append(out, p)
		}
	}
	return out
}

func roundTripWithin(addr string, data []byte, d time.Duration) ([]byte, error) {
	type result struct {
		b   []byte
		err error
	}
	ch := make(chan result, 1)
	go func() { b, err := roundTrip(addr, data); ch <- result{b, err} }()
	select {
	case r := <-ch:
		return r.b, r.err
	case <-time.After(d):
		return nil, fmt.Errorf("no answer within %s", d)
	}
}

// TestTrustBundleKeyHealsUnderTraffic deletes west's trust bundle key, then
// overwrites it with junk, while east's client keeps calling west's echo
// service (each call a new inner mTLS handshake that needs west's bundle in
// east). Traffic must keep succeeding or recover within 5s each time, with
// no restart and no hand edit; the key must end up holding west's bundle
// again. On the old code the deletion was republished as sequence 1, which
// east refused as stale, and traffic never recovered.
func TestTrustBundleKeyHealsUnderTraffic(t *testing.T) {
	f := startFederation(t, testConfig(t))
	cli, err := federation.Dial(federation.ClientConfig{Endpoints: f.EtcdEndpoints()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	west := f.Cluster("west")
	key := federation.Keyspace{}.Bundle(west.TrustDomain.Name())
	addr := f.UpstreamAddr("east", "echo")

	tr := startTraffic(addr)
	defer tr.halt()
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		damage func() error
	}{
		{"deleted", func() error { _, err := cli.Delete(ctx, key); return err }},
		{"junk", func() error { _, err := cli.Put(ctx, key, "junk written by hand"); return err }},
	} {
		// Traffic flows before the damage.
		before := time.Now()
		waitFor(t, recoverWithin, "a request succeeding before "+tc.name, func() bool { return succeeded(tr.since(before)) })

		damaged := time.Now()
		if err := tc.damage(); err != nil {
			t.Fatal(err)
		}
		// The key holds west's bundle again.
		waitFor(t, recoverWithin, "west's bundle key repaired after "+tc.name, func() bool {
			resp, err := cli.Get(ctx, key)
			if err != nil || len(resp.Kvs) == 0 {
				return false
			}
			_, b, err := trust.UnmarshalBundle(resp.Kvs[0].Value)
			return err == nil && b.Equal(west.CA.Bundle())
		})
		// Traffic keeps going, and every request started recoverWithin
		// after the damage succeeds: watch it for another two seconds.
		settled := damaged.Add(recoverWithin)
		waitFor(t, recoverWithin+3*time.Second, "requests after "+tc.name, func() bool {
			return time.Now().After(settled.Add(2*time.Second)) && len(tr.since(settled)) > 0
		})
		var failed, late int
		var lastErr error
		for _, p := range tr.since(damaged) {
			if p.err != nil {
				failed++
				lastErr = p.err
				if !p.start.Before(settled) {
					late++
				}
			}
		}
		total := len(tr.since(damaged))
		t.Logf("%s: %d requests since the damage, %d failed, %d of them later than %s (last error: %v)",
			tc.name, total, failed, late, recoverWithin, lastErr)
		if late > 0 {
			t.Fatalf("%s: %d requests started more than %s after the damage failed (last: %v)", tc.name, late, recoverWithin, lastErr)
		}
	}
	probes := tr.halt()
	if len(probes) == 0 || probes[len(probes)-1].err != nil {
		t.Fatalf("traffic did not end healthy")
	}
}

// succeeded reports whether any probe succeeded.
func succeeded(ps []probe) bool {
	for _, p := range ps {
		if p.err == nil {
			return true
		}
	}
	return false
}

// waitFor polls cond until it holds, failing the test after d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(20 * time.Millisecond) // polling with a deadline
	}
}
