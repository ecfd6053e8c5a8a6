package ratelog

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Defaults of Config.
const (
	DefaultEvery = 100 * time.Millisecond
	DefaultBurst = 20
)

// Config sets the rate of a Limiter. Zero values mean the defaults.
type Config struct {
	// Every is the interval at which the budget of lines refills by one.
	// Zero means DefaultEvery (ten lines a second).
	Every time.Duration
	// Burst is how many lines may be written at once. Zero means
	// DefaultBurst.
	Burst int
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
}

// SuppressedKey is the field that counts the lines held back since the
// previous line written.
const SuppressedKey = "suppressed"

// Limiter writes log lines at a bounded rate. It is safe for concurrent
// use; share one between the places whose lines share the budget.
type Limiter struct {
	lim        *rate.Limiter
	now        func() time.Time
	suppressed atomic.Uint64
}

// New returns a Limiter with cfg's rate.
func New(cfg Config) *Limiter {
	if cfg.Every <= 0 {
		cfg.Every = DefaultEvery
	}
	if cfg.Burst <= 0 {
		cfg.Burst = DefaultBurst
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Limiter{lim: rate.NewLimiter(rate.Every(cfg.Every), cfg.Burst), now: cfg.Now}
}

// Warn logs msg with args at WARN level, unless the rate is exceeded.
func (l *Limiter) Warn(log *slog.Logger, msg string, args ...any) {
	l.Log(log, slog.LevelWarn, msg, args...)
}

// Log logs msg with args at level, unless the rate is exceeded: then the
// line is counted, and the count is added, as SuppressedKey, to the next
// line written. It reports whether the line was written. A line the
// logger's level disables neither spends the budget nor is counted.
func (l *Limiter) Log(log *slog.Logger, level slog.Level, msg string, args ...any) bool {
	if !log.Enabled(context.Background(), level) {
		return false
	}
	if !l.lim.AllowN(l.now(), 1) {
		l.suppressed.Add(1)
		return false
	}
	if n := l.suppressed.Swap(0); n > 0 {
		args = append(args, SuppressedKey, n)
	}
	log.Log(context.Background(), level, msg, args...)
	return true
}
