package relay

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// DefaultBufferSize is the size of a pooled copy buffer.
const DefaultBufferSize = 32 << 10

// Config configures a Relay.
type Config struct {
	// BufferSize is the size of each pooled copy buffer. Zero means
	// DefaultBufferSize.
	BufferSize int
}

// Counter receives byte counts as they are copied; prometheus.Counter
// implements it.
type Counter interface{ Add(float64) }

// Relay copies between connections with buffers from its own pool. It is
// safe for concurrent use.
type Relay struct {
	size int
	pool sync.Pool
}

// New returns a Relay.
func New(cfg Config) *Relay {
	size := cfg.BufferSize
	if size <= 0 {
		size = DefaultBufferSize
	}
	r := &Relay{size: size}
	r.pool.New = func() any {
		b := make([]byte, size)
		return &b
	}
	return r
}

// Result reports what a Pipe copied.
type Result struct {
	// AToB and BToA count the bytes copied in each direction.
	AToB, BToA int64
	// AToBFirst and AToBLast (BToAFirst, BToALast) are when the first and
	// the last bytes of each direction were written, zero when none was:
	// a relay that lasted long tells which side kept it waiting.
	AToBFirst, AToBLast, BToAFirst, BToALast time.Time
	// Err is the first error that aborted the relay, or nil when both
	// directions ended in order.
	Err error
}

// Counters optionally count the bytes of each direction while they flow.
type Counters struct {
	AToB, BToA Counter
	// Times records when each direction's first and last bytes were
	// written (Result's AToBFirst ... BToALast); off, they stay zero and no
	// chunk reads the clock.
	Times bool
}

// Pipe copies a→b and b→a until both directions end, then closes both
// sides. A direction that ends in order is half-closed on the other side; an
// error in either direction aborts both sides.
func (r *Relay) Pipe(a, b Conn, counters Counters) Result {
	var res Result
	var wg sync.WaitGroup
	var once sync.Once
	abort := func(err error) {
		once.Do(func() {
			res.Err = err
			a.Abort()
			b.Abort()
		})
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		n, err := r.half(b, a, counters.AToB, timesOf(counters.Times, &res.AToBFirst, &res.AToBLast))
		res.AToB = n
		if err != nil {
			abort(err)
		}
	}()
	n, err := r.half(a, b, counters.BToA, timesOf(counters.Times, &res.BToAFirst, &res.BToALast))
	res.BToA = n
	if err != nil {
		abort(err)
	}
	wg.Wait()
	if res.Err == nil {
		_ = a.Close()
		_ = b.Close()
	}
	return res
}

// half copies src to dst and half-closes dst when src ends in order.
func (r *Relay) half(dst, src Conn, c Counter, t *times) (int64, error) {
	n, err := r.copy(dst, src, c, t)
	if err != nil {
		return n, err
	}
	return n, dst.CloseWrite()
}

func (r *Relay) copy(dst, src Conn, c Counter, t *times) (int64, error) {
	if dt, st, ok := bothTCP(dst, src); ok {
		n, err := dt.ReadFrom(st) // splice(2) on Linux
		if c != nil {
			c.Add(float64(n))
		}
		if n > 0 && t != nil {
			*t.last = time.Now() // splice has no first write to time
		}
		return n, err
	}
	bp := r.pool.Get().(*[]byte)
	defer r.pool.Put(bp)
	return copyBuffer(dst, src, *bp, c, t)
}

func bothTCP(dst, src Conn) (*net.TCPConn, *net.TCPConn, bool) {
	d, ok1 := dst.(tcpConn)
	s, ok2 := src.(tcpConn)
	return d.TCPConn, s.TCPConn, ok1 && ok2
}

// times is where a direction's first and last write times go.
type times struct{ first, last *time.Time }

// timesOf returns the times of a direction, or nil when they are off.
func timesOf(on bool, first, last *time.Time) *times {
	if !on {
		return nil
	}
	return &times{first, last}
}

// copyBuffer is io.CopyBuffer without the WriterTo/ReaderFrom shortcuts,
// which would allocate their own buffers.
func copyBuffer(dst io.Writer, src io.Reader, buf []byte, c Counter, t *times) (int64, error) {
	var total int64
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			w, werr := dst.Write(buf[:n])
			if w > 0 && t != nil {
				*t.last = time.Now()
				if t.first.IsZero() {
					*t.first = *t.last
				}
			}
			total += int64(w)
			if c != nil {
				c.Add(float64(w))
			}
			if werr != nil {
				return total, werr
			}
			if w != n {
				return total, io.ErrShortWrite
			}
		}
		if errors.Is(rerr, io.EOF) {
			return total, nil
		}
		if rerr != nil {
			return total, rerr
		}
	}
}
