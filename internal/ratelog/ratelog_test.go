package ratelog

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"
	"time"
)

// lines decodes the JSON lines a handler wrote.
func lines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	dec := json.NewDecoder(buf)
	for dec.More() {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

func TestLimiter(t *testing.T) {
	now := time.Unix(1000, 0)
	l := New(Config{Every: time.Second, Burst: 2, Now: func() time.Time { return now }})
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn}))

	steps := []struct {
		advance time.Duration
		written bool
	}{
		{0, true}, {0, true}, // the burst
		{0, false}, {0, false}, {500 * time.Millisecond, false}, // over the rate
		{500 * time.Millisecond, true}, // one second later: one more, reporting 3 held back
		{0, false},
		{time.Second, true}, // reporting 1
	}
	for i, s := range steps {
		now = now.Add(s.advance)
		if got := l.Log(log, slog.LevelWarn, "refused", "step", i); got != s.written {
			t.Fatalf("step %d: written = %v, want %v", i, got, s.written)
		}
	}
	got := lines(t, &buf)
	wantSuppressed := []float64{0, 0, 3, 1}
	if len(got) != len(wantSuppressed) {
		t.Fatalf("%d lines written, want %d: %v", len(got), len(wantSuppressed), got)
	}
	for i, m := range got {
		if m["level"] != "WARN" || m["msg"] != "refused" {
			t.Errorf("line %d = %v, want a WARN line \"refused\"", i, m)
		}
		n, _ := m[SuppressedKey].(float64)
		if n != wantSuppressed[i] {
			t.Errorf("line %d: %s = %v, want %v", i, SuppressedKey, m[SuppressedKey], wantSuppressed[i])
		}
	}
}

func TestDisabledLevelSpendsNothing(t *testing.T) {
	now := time.Unix(1000, 0)
	l := New(Config{Every: time.Hour, Burst: 1, Now: func() time.Time { return now }})
	var buf bytes.Buffer
	quiet := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelError}))
	for range 5 {
		l.Warn(quiet, "hidden")
	}
	loud := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if !l.Log(loud, slog.LevelWarn, "shown") {
		t.Fatal("a line was held back after only disabled lines")
	}
	got := lines(t, &buf)
	if len(got) != 1 || got[0]["msg"] != "shown" || got[0][SuppressedKey] != nil {
		t.Fatalf("lines = %v, want one line \"shown\" without %s", got, SuppressedKey)
	}
}
