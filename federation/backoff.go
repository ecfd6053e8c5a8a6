package federation

import (
	"math/rand/v2"
	"time"
)

// backoff yields jittered, exponentially growing delays between min and
// max, so that many clients retrying at once spread out. It is not safe for
// concurrent use; each loop owns one.
type backoff struct {
	min, max time.Duration
	attempt  int
}

// next returns the delay before the next attempt: a random duration in
// [d/2, d) where d doubles with each attempt, from min up to max.
func (b *backoff) next() time.Duration {
	d := b.min
	for i := 0; i < b.attempt && d < b.max; i++ {
		d *= 2
	}
	d = min(d, b.max)
	b.attempt++
	half := d / 2
	if half <= 0 {
		return d
	}
	return half + rand.N(half)
}

// reset starts over from min after a success.
func (b *backoff) reset() { b.attempt = 0 }

// sleepCtx waits d or until done is closed; it reports whether d elapsed.
func sleepCtx(done <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-done:
		return false
	}
}
