package load

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// History is a list of outcomes in start order.
type History []Record

// Summary condenses a history.
type Summary struct {
	Sent, OK, Failed int
	ByKind           map[string]int // failures by kind
	ByCluster        map[string]int // successes by answering cluster
	P50, P99, Max    time.Duration  // latencies of successes
	Start, End       time.Time      // first start, last completion
	FirstFailure     time.Time      // start of the first failure (zero if none)
	LastFailure      time.Time      // start of the last failure
}

// Summary computes the summary.
func (h History) Summary() Summary {
	s := Summary{ByKind: map[string]int{}, ByCluster: map[string]int{}}
	var lat []time.Duration
	for i, r := range h {
		if i == 0 || r.Start.Before(s.Start) {
			s.Start = r.Start
		}
		if r.End().After(s.End) {
			s.End = r.End()
		}
		s.Sent++
		if r.OK() {
			s.OK++
			s.ByCluster[r.Cluster]++
			lat = append(lat, r.Latency)
			continue
		}
		s.Failed++
		s.ByKind[r.Kind]++
		if s.FirstFailure.IsZero() || r.Start.Before(s.FirstFailure) {
			s.FirstFailure = r.Start
		}
		if r.Start.After(s.LastFailure) {
			s.LastFailure = r.Start
		}
	}
	if len(lat) > 0 {
		slices.Sort(lat)
		s.P50 = lat[(len(lat)-1)*50/100]
		s.P99 = lat[(len(lat)-1)*99/100]
		s.Max = lat[len(lat)-1]
	}
	return s
}

// String formats the summary on one line.
func (s Summary) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "sent %d ok %d failed %d p50 %s p99 %s max %s", s.Sent, s.OK, s.Failed,
		s.P50.Round(10*time.Microsecond), s.P99.Round(10*time.Microsecond), s.Max.Round(10*time.Microsecond))
	if s.Failed > 0 {
		fmt.Fprintf(&b, " failures %s from +%s to +%s", fmtCounts(s.ByKind),
			s.FirstFailure.Sub(s.Start).Round(time.Millisecond), s.LastFailure.Sub(s.Start).Round(time.Millisecond))
	}
	fmt.Fprintf(&b, " clusters %s", fmtCounts(s.ByCluster))
	return b.String()
}

func fmtCounts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		name := k
		if name == "" {
			name = "?"
		}
		parts = append(parts, fmt.Sprintf("%s=%d", name, m[k]))
	}
	return "{" + strings.Join(parts, " ") + "}"
}

// Between returns the records that started in [from, to).
func (h History) Between(from, to time.Time) History {
	var out History
	for _, r := range h {
		if !r.Start.Before(from) && r.Start.Before(to) {
			out = append(out, r)
		}
	}
	return out
}

// Failures returns the failed records.
func (h History) Failures() History {
	var out History
	for _, r := range h {
		if !r.OK() {
			out = append(out, r)
		}
	}
	return out
}

// FirstOKFrom returns how long after t the first successful response from
// cluster completed, among requests started at or after t: the time to
// reroute after a fault at t, or to return after a heal at t.
func (h History) FirstOKFrom(t time.Time, cluster string) (time.Duration, bool) {
	var best time.Time
	for _, r := range h {
		if r.OK() && r.Cluster == cluster && !r.Start.Before(t) && (best.IsZero() || r.End().Before(best)) {
			best = r.End()
		}
	}
	if best.IsZero() {
		return 0, false
	}
	return best.Sub(t), true
}

// SettledOn returns how long after t traffic settled on cluster: the start of
// the earliest request from which on every request succeeded from cluster
// (false when the history does not end that way).
func (h History) SettledOn(t time.Time, cluster string) (time.Duration, bool) {
	settled := time.Time{}
	for _, r := range h {
		if r.Start.Before(t) {
			continue
		}
		if r.OK() && r.Cluster == cluster {
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
	return settled.Sub(t), true
}

// SplitReached splits the failures of h by whether their idempotency key
// reached an application: keys is what the applications' journals hold
// (Server.Journal, ReadJournal). A failed request in reached was delivered
// and lost only its answer, so no hop may retry it (a retry would run it
// twice); one in unreached never reached an application, so it was still
// retryable and its failure counts.
func (h History) SplitReached(keys map[string]int) (reached, unreached History) {
	for _, r := range h {
		if r.OK() {
			continue
		}
		if keys[r.Key] > 0 {
			reached = append(reached, r)
		} else {
			unreached = append(unreached, r)
		}
	}
	return reached, unreached
}
