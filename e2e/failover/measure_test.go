package failover

import (
	"context"
	"fmt"
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
	return fmt.Sprintf("%d sent, %d failed %v, served by %v, %d slower than %s, max %s",
		s.Sent, s.Failed, s.ByKind, s.ByCluster, slow, promptLatency, s.Max.Round(time.Millisecond))
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
