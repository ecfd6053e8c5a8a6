package check

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestExpiry(t *testing.T) {
	now := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		notAfter time.Time
		want     Status
	}{
		{"expired", now.Add(-time.Second), Fail},
		{"expires now", now, Fail},
		{"within the warning", now.Add(6 * 24 * time.Hour), Warn},
		{"beyond the warning", now.Add(8 * 24 * time.Hour), OK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, msg, hint := expiry(tc.notAfter, now, defaultExpiryWarning, "renew it")
			if got != tc.want {
				t.Fatalf("expiry: %s (%s), want %s", got, msg, tc.want)
			}
			if (got == OK) != (hint == "") {
				t.Fatalf("status %s with hint %q: a hint goes with every status but ok", got, hint)
			}
		})
	}
}

func TestRunRefusesBadConfig(t *testing.T) {
	_, err := Run(context.Background(), Config{HandshakeTimeout: -time.Second})
	if err == nil {
		t.Fatal("Run accepted a config without etcd and with a negative timeout")
	}
	for _, want := range []string{"etcd client is required", "handshake timeout -1s is negative"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

func TestReportCounts(t *testing.T) {
	rep := &Report{Results: []Result{{Status: OK}, {Status: Warn}, {Status: OK}}}
	if rep.Failed() || rep.Count(OK) != 2 || rep.Count(Warn) != 1 {
		t.Fatalf("report %+v: failed %t, %d ok, %d warn", rep, rep.Failed(), rep.Count(OK), rep.Count(Warn))
	}
	rep.Results = append(rep.Results, Result{Status: Fail})
	if !rep.Failed() {
		t.Fatal("a report with a failure is not failed")
	}
}
