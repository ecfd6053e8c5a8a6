package wait

import (
	"context"
	"fmt"
	"time"
)

// Until calls cond right away and then every interval until it reports true
// (Until returns nil), returns an error (Until returns it), or ctx ends (Until
// returns ctx's error wrapped with the last error cond returned, if any).
// A cond error with Retry wrapped around it is remembered and polling goes on.
func Until(ctx context.Context, interval time.Duration, cond func(ctx context.Context) (bool, error)) error {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	var last error
	for {
		ok, err := cond(ctx)
		if err != nil {
			var r retryError
			if !asRetry(err, &r) {
				return err
			}
			last = r.err
		} else if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("wait: %w (last error: %w)", ctx.Err(), last)
			}
			return fmt.Errorf("wait: %w", ctx.Err())
		case <-ticker.C:
		}
	}
}

// Retry marks err as transient: Until keeps polling and reports it only if the
// deadline passes.
func Retry(err error) error {
	if err == nil {
		return nil
	}
	return retryError{err: err}
}

type retryError struct{ err error }

func (r retryError) Error() string { return r.err.Error() }
func (r retryError) Unwrap() error { return r.err }

func asRetry(err error, r *retryError) bool {
	re, ok := err.(retryError)
	if ok {
		*r = re
	}
	return ok
}

// TB is the part of testing.TB that For uses.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
}

// For polls cond every 10 ms until it holds, and fails the test with what
// when timeout passes first.
func For(t TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := Until(ctx, 10*time.Millisecond, func(context.Context) (bool, error) { return cond(), nil }); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}
