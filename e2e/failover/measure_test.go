package failover

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strait-mesh/strait/e2e/load"
	"github.com/strait-mesh/strait/e2e/netns"
	"github.com/strait-mesh/strait/e2e/wait"
)

// Load of every scenario.
const (
	// rate is how many new connections the client opens per second.
	rate = 200
	// clientTimeout is the client's patience for one request (connect,
	// request and response); a request slower than that is a failure.
	clientTimeout = 5 * time.Second
	// promptLatency separates a request served directly from one that first
	// waited on a dead or unreachable candidate: the slowest healthy
	// request across the WAN takes about 0.1 s here.
	promptLatency = 500 * time.Millisecond
)

// loadRun is the load generator running against an upstream listener.
type loadRun struct {
	gen    *load.Generator
	cancel context.CancelFunc
	done   chan error

	once    sync.Once
	history load.History
}

// startLoad opens rate new connections per second from h to listen until
// stop, and waits until the first requests succeeded from cluster.
func startLoad(t *testing.T, ctx context.Context, h *netns.Host, listen, cluster string) *loadRun {
	t.Helper()
	gen, err := load.NewGenerator(load.Config{Target: listen, Dial: h.DialContext, Rate: rate, Timeout: clientTimeout, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	gctx, cancel := context.WithCancel(ctx)
	lr := &loadRun{gen: gen, cancel: cancel, done: make(chan error, 1)}
	go func() { lr.done <- gen.Run(gctx) }()
	t.Cleanup(func() { lr.stop() })
	lr.waitSettled(t, time.Now(), cluster, 30*time.Second, time.Second)
	return lr
}

// stop ends the load, waits for the requests in flight, and returns the
// whole history.
func (lr *loadRun) stop() load.History {
	lr.once.Do(func() {
		lr.cancel()
		<-lr.done
		lr.history = lr.gen.History()
	})
	return lr.history
}

// waitSettled waits until the requests started since from have been prompt
// successes from cluster for at least hold, and returns how long after from
// that run began.
func (lr *loadRun) waitSettled(t *testing.T, from time.Time, cluster string, timeout, hold time.Duration) time.Duration {
	t.Helper()
	var settled time.Duration
	wait.For(t, timeout, fmt.Sprintf("traffic settled on %s for %s", cluster, hold), func() bool {
		h := lr.gen.History().Between(from, time.Now())
		d, ok := settleTime(h, from, cluster)
		if !ok || time.Since(from.Add(d)) < hold {
			return false
		}
		settled = d
		return true
	})
	return settled
}

// settled is waitSettled that reports a timeout instead of failing the
// test: false when traffic did not settle on cluster within timeout.
func (lr *loadRun) settled(from time.Time, cluster string, timeout, hold time.Duration) (time.Duration, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var settled time.Duration
	err := wait.Until(ctx, 10*time.Millisecond, func(context.Context) (bool, error) {
		d, ok := settleTime(lr.gen.History().Between(from, time.Now()), from, cluster)
		if !ok || time.Since(from.Add(d)) < hold {
			return false, nil
		}
		settled = d
		return true, nil
	})
	return settled, err == nil
}

// prompt reports whether r succeeded from cluster without first waiting on
// another candidate.
func prompt(r load.Record, cluster string) bool {
	return r.OK() && r.Cluster == cluster && r.Latency <= promptLatency
}

// settleTime returns how long after from the last run of prompt successes
// from cluster in h began: the start of the earliest request after which
// every request (started at or after from, and completed) was one. False
// when the last completed request was not one.
func settleTime(h load.History, from time.Time, cluster string) (time.Duration, bool) {
	var settled time.Time
	for _, r := range h {
		if r.Start.Before(from) {
			continue
		}
		if prompt(r, cluster) {
			if settled.IsZero() {
				settled = r.Start
			}
		} else {
			settled = time.Time{}
		}
	}
	if settled.IsZero() {
		return 0, false
	}
	return settled.Sub(from), true
}

// window describes the requests of h started in [from, to): counts, the
// clusters that served them, failures by kind, slow requests and the
// slowest one.
func window(h load.History, from, to time.Time) string {
	w := h.Between(from, to)
	s := w.Summary()
	slow := 0
	for _, r := range w {
		if r.OK() && r.Latency > promptLatency {
			slow++
		}
	}
	return fmt.Sprintf("%d sent, %d failed %v, served by %v, %d slower than %s, p99 %s, max %s",
		s.Sent, s.Failed, s.ByKind, s.ByCluster, slow, promptLatency, s.P99.Round(time.Millisecond), s.Max.Round(time.Millisecond))
}

// failures describes up to n failed requests of h, relative to t0.
func failures(h load.History, t0 time.Time, n int) string {
	var b strings.Builder
	for i, r := range h.Failures() {
		if i == n {
			fmt.Fprintf(&b, "\n  … %d more", len(h.Failures())-n)
			break
		}
		fmt.Fprintf(&b, "\n  %s started %+.3fs, after %s: %s: %s", r.Key, r.Start.Sub(t0).Seconds(),
			r.Latency.Round(time.Millisecond), r.Kind, r.Error)
	}
	return b.String()
}

// ms formats a duration for notes.
func ms(d time.Duration) string { return d.Round(time.Millisecond).String() }

// timeline describes h from from to to in buckets relative to t0: per
// bucket, the requests started, who served them, how many were slow and how
// many failed.
func timeline(h load.History, t0, from, to time.Time, bucket time.Duration) string {
	var b strings.Builder
	for at := from; at.Before(to); at = at.Add(bucket) {
		w := h.Between(at, at.Add(bucket))
		if len(w) == 0 {
			continue
		}
		s := w.Summary()
		slow := 0
		for _, r := range w {
			if r.OK() && r.Latency > promptLatency {
				slow++
			}
		}
		fmt.Fprintf(&b, "\n  %+7.2fs %3d sent %v slow %d failed %d max %s", at.Sub(t0).Seconds(), s.Sent,
			s.ByCluster, slow, s.Failed, ms(s.Max))
	}
	return b.String()
}

// steadyWindow is the stretch of load before a fault whose latencies give
// the in-flight time of the cap on excused failures.
const steadyWindow = 5 * time.Second

// verdict sorts the failures of a fault's history by evidence of how far
// each request got. A request is past the point of retry when it was
// delivered to an app (its idempotency key is in an app's journal: only
// its answer was lost) or when east's client proxy had completed the inner
// handshake with the destination and sent it on (the proxy's own log of the
// connection, matched by the request's local address, shows request bytes
// out and no answer byte in): no hop can tell whether such a request ran,
// so none may retry it. Those failures are excused, up to a cap; any other
// failure (a connection that never got past its handshake, or that a
// proxy or gateway gave up on) was still retryable, and counts.
type verdict struct {
	delivered, sent, counted load.History
	// cap bounds the excused: no more requests can have been past the
	// point of retry at the fault than were in flight while it took
	// effect, rate × inFlight (Little's law), inFlight being the p99
	// latency of the requests that started and completed in the
	// steadyWindow before the fault plus how long the fault took to take
	// effect (a SIGKILLed process accepts until it has exited).
	cap      int
	inFlight time.Duration
	// dups are keys that reached an app more than once: a request run
	// twice (a retry of a delivered request).
	dups []string
}

// excused returns how many failures the verdict excuses.
func (v verdict) excused() int { return len(v.delivered) + len(v.sent) }

// judge sorts the failures of h for a fault at fault that took effect
// within took, by the apps' journals and east's client proxy's log.
func (w *world) judge(t *testing.T, h load.History, fault time.Time, took time.Duration) verdict {
	t.Helper()
	keys := w.appKeys()
	_, rest := h.SplitReached(keys)
	return classify(h, fault, took, keys, w.clientConns(t, rest))
}

// classify is judge on its evidence: keys are the keys the apps journaled,
// conns the client proxy's closed connections of failed requests, by key.
func classify(h load.History, fault time.Time, took time.Duration, keys map[string]int, conns map[string]proxyConn) verdict {
	var v verdict
	delivered, rest := h.SplitReached(keys)
	v.delivered = delivered
	for _, r := range rest {
		if c, ok := conns[r.Key]; ok && c.BytesOut > 0 {
			v.sent = append(v.sent, r)
		} else {
			v.counted = append(v.counted, r)
		}
	}
	var steady load.History
	for _, r := range h.Between(fault.Add(-steadyWindow), fault) {
		if r.End().Before(fault) {
			steady = append(steady, r)
		}
	}
	v.inFlight = steady.Summary().P99 + took
	v.cap = int(math.Ceil(rate * v.inFlight.Seconds()))
	for _, r := range h {
		if keys[r.Key] > 1 {
			v.dups = append(v.dups, r.Key)
		}
	}
	return v
}

// check fails t for every counted failure, for excused ones beyond the
// cap, and for requests run twice.
func (v verdict) check(t *testing.T, t0 time.Time) {
	t.Helper()
	if len(v.counted) > 0 {
		t.Errorf("%d failed requests never got past the point of retry (no app journaled their key, and east's proxy did not relay them after a completed handshake): they count:%s",
			len(v.counted), failures(v.counted, t0, 20))
	}
	if n := v.excused(); n > v.cap {
		t.Errorf("%d failed requests were past the point of retry, more than could be in flight at the fault (cap %d = %d/s × %s):%s%s",
			n, v.cap, rate, ms(v.inFlight), failures(v.delivered, t0, 10), failures(v.sent, t0, 10))
	}
	if len(v.dups) > 0 {
		t.Errorf("%d requests reached an app more than once: %v", len(v.dups), v.dups)
	}
}

// String is the verdict for notes and logs.
func (v verdict) String() string {
	return fmt.Sprintf("%d failed past the point of retry (excused: %d delivered to an app, %d relayed after the handshake; cap %d = %d/s × in-flight %s), %d still retryable (counted)",
		v.excused(), len(v.delivered), len(v.sent), v.cap, rate, ms(v.inFlight), len(v.counted))
}

// proxyConn is a connection east's client proxy logged when it closed
// (after a completed inner handshake; it logs nothing of this kind for a
// connection that never reached a destination).
type proxyConn struct {
	Time     time.Time `json:"time"`
	Msg      string    `json:"msg"`
	Remote   string    `json:"remote_addr"`
	Addr     string    `json:"addr"`
	BytesOut int64     `json:"bytes_out"`
	BytesIn  int64     `json:"bytes_in"`
}

// clientConns finds, for each failed request of fails, the connection
// east's client proxy logged for it: same local address, closed after the
// request started and at most connLogSlack after it ended. It waits up to
// connLogWait for lines not written yet (the proxy logs a connection once
// both directions have ended).
func (w *world) clientConns(t *testing.T, fails load.History) map[string]proxyConn {
	t.Helper()
	proxy := w.proxies[w.client().String()]
	found := map[string]proxyConn{}
	deadline := time.Now().Add(connLogWait)
	for {
		byRemote := map[string][]proxyConn{}
		for _, line := range strings.Split(proxy.Log(), "\n") {
			if !strings.Contains(line, `"connection closed"`) {
				continue
			}
			var c proxyConn
			if json.Unmarshal([]byte(line), &c) == nil && c.Remote != "" {
				byRemote[c.Remote] = append(byRemote[c.Remote], c)
			}
		}
		missing := 0
		for _, r := range fails {
			if r.Local == "" {
				continue
			}
			// The earliest line after the request started: a later one
			// with the same address is a later connection that reused
			// the port.
			for _, c := range byRemote[r.Local] {
				if !c.Time.Before(r.Start) && c.Time.Before(r.End().Add(connLogSlack)) {
					if f, ok := found[r.Key]; !ok || c.Time.Before(f.Time) {
						found[r.Key] = c
					}
				}
			}
			if _, ok := found[r.Key]; !ok {
				missing++
			}
		}
		if missing == 0 || time.Now().After(deadline) {
			return found
		}
		hold(t, context.Background(), 200*time.Millisecond) // the proxy logs the rest as their relays end
	}
}

// Bounds of clientConns: a relay ends when both directions have, which for
// a connection whose client gave up can be a while after the client saw
// its failure (until the dead path's stream is reset).
const (
	connLogSlack = 40 * time.Second
	connLogWait  = 10 * time.Second
)

// slowBounds bound the latency of successful requests during a fault that
// must not slow them much (scenarios 5, 6 and 8; see README.md).
type slowBounds struct{ p99, max time.Duration }

// checkSlow fails t when the successes of h started in [from, to) exceed b,
// and returns their p99 and max for the report.
func checkSlow(t *testing.T, h load.History, from, to time.Time, b slowBounds, what string) (p99, max time.Duration) {
	t.Helper()
	s := h.Between(from, to).Summary()
	if s.P99 > b.p99 {
		t.Errorf("%s: p99 latency %s, want at most %s", what, ms(s.P99), b.p99)
	}
	if s.Max > b.max {
		t.Errorf("%s: slowest request %s, want at most %s", what, ms(s.Max), b.max)
	}
	return s.P99, s.Max
}
