package session

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// Stream is one connection carried by a client session: a net.Conn whose
// writes go to the destination's application and whose reads come from
// it. Open returns it at once, without waiting for the destination's
// answer, so that the application's first bytes travel with the request to
// open the stream (one round trip to the first byte of the answer). Until
// the answer arrives, writes are tentative (Tentative): a refusal or a
// failure then leaves the caller free to send the same bytes elsewhere
// (Retryable).
type Stream struct {
	c      *Client
	target string
	opened time.Time
	// hold makes writes wait for the answer (Config.Pipeline).
	hold   bool
	pw     *io.PipeWriter
	cancel context.CancelFunc
	// giveUp ends a held stream that has no answer after the session's
	// stall time (abandoned is then set): nothing of the application's
	// went out on it, so it may go elsewhere.
	giveUp    *time.Timer
	abandoned atomic.Bool

	done chan struct{} // closed once resp or err is set
	resp *http.Response
	err  error // the failure before an answer, or the refusal

	written, read atomic.Int64
	closeOnce     sync.Once
}

// open starts a stream to target (the service name of the destination, in
// the grammar of federation.ServiceName) on a slot reserve took. first is
// the stream the session was opened for, as its handshake completed: it is
// never held (see Config.Pipeline).
func (c *Client) open(target string, first bool) *Stream {
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	s := &Stream{c: c, target: target, opened: time.Now(), pw: pw, cancel: cancel, done: make(chan struct{}), hold: !first && !c.fresh()}
	req := (&http.Request{
		Method:        http.MethodConnect,
		URL:           &url.URL{Host: target},
		Host:          target,
		Header:        http.Header{},
		Body:          pr,
		ContentLength: -1,
	}).WithContext(ctx)
	c.total.Add(1)
	c.m.streamOpened(SideClient)
	c.pendMu.Lock()
	c.pending[s] = s.opened
	if s.hold {
		// A held stream that waits for its answer longer than a stalled
		// session is allowed probes the session (check), and gives up
		// with nothing sent when the probe goes unanswered, so that the
		// connection goes to a new session (or another candidate)
		// instead of waiting for the session's PING timeout.
		s.giveUp = time.AfterFunc(c.stallAfter(), s.check)
	}
	c.pendMu.Unlock()
	go func() {
		resp, err := c.cc.RoundTrip(req)
		took := time.Since(s.opened)
		c.pendMu.Lock()
		delete(c.pending, s)
		if s.giveUp != nil {
			s.giveUp.Stop()
		}
		c.pendMu.Unlock()
		if s.abandoned.Load() {
			// Given up (before the answer was taken in above), even if
			// the answer came meanwhile: the stream was held, so nothing
			// of the caller's went out, and its request is cancelled
			// (the destination resets it).
			if err == nil {
				_ = resp.Body.Close()
			}
			resp, err = nil, ErrStalled
		}
		c.m.observeStreamSetup(took.Seconds())
		if err == nil && resp.StatusCode == http.StatusOK {
			c.observeRTT(took)
		}
		switch {
		case err != nil:
			s.err = err
		case resp.StatusCode != http.StatusOK:
			_ = resp.Body.Close()
			s.err = refusalOf(resp)
		default:
			s.resp = resp
		}
		if s.err != nil {
			_ = pw.CloseWithError(s.err)
		}
		close(s.done)
	}()
	return s
}

// check runs when a held stream has waited stallAfter for its answer.
// While the session keeps receiving (a frame in the last stallAfter), or
// answers a probe's PING (Client.probe), the destination is slow, not
// gone: the stream waits on and is checked again later, so that a busy
// host does not send every waiting connection to a new handshake. An
// unanswered probe means the path may be dead: the stream gives up
// (abandon).
func (s *Stream) check() {
	if s.answered() {
		return
	}
	if s.c.conn.sinceRead() >= s.c.stallAfter() {
		p := s.c.probe()
		<-p.done
		if !p.ok {
			s.abandon()
			return
		}
	}
	s.c.pendMu.Lock()
	defer s.c.pendMu.Unlock()
	if _, waiting := s.c.pending[s]; waiting {
		s.giveUp.Reset(s.c.stallAfter())
	}
}

// abandon gives up a held stream that has no answer yet: its request is
// cancelled (the destination resets the stream and closes the connection
// it may have opened to its application, which has received no byte of
// the caller's). A stream answered before is left alone.
func (s *Stream) abandon() {
	s.c.pendMu.Lock()
	_, waiting := s.c.pending[s] // its answer has not been taken in
	if waiting {
		s.abandoned.Store(true)
	}
	s.c.pendMu.Unlock()
	if waiting {
		s.c.m.streamAbandoned()
		s.cancel()
	}
}

// GiveUp gives up the stream if the destination has not answered it yet,
// as a stalled session's stream gives up (its request is cancelled; a held
// stream has sent nothing of the caller's, and fails retryable). It
// reports whether it gave up; a stream answered before is left alone. The
// proxy calls it when a connection's connect budget runs out while its
// stream still waits for the destination's answer.
func (s *Stream) GiveUp() bool {
	if s.answered() {
		return false
	}
	s.abandon()
	return s.abandoned.Load()
}

// answered reports whether the destination's answer (or a failure) is in.
func (s *Stream) answered() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// Tentative reports whether the destination has not yet accepted the
// stream: bytes written so far may still be refused with it.
func (s *Stream) Tentative() bool { return !s.answered() || s.err != nil }

// Retryable reports, after a failure, whether the stream may be opened
// again elsewhere with every byte written to it, because none of them can
// have reached the destination's application: the destination refused it
// (RefusedError; whether another destination may do better is the
// caller's call), or it failed before the destination's answer and nothing
// was written, or the peer sent GOAWAY (it never processed the stream); or
// it failed after the answer with no byte either way.
//
// A stream whose bytes went out and whose answer never came is not
// retryable, however silent the session: the destination relays them once
// it has sent its answer, and a path that loses the answer may have
// carried the request (a partition that cuts one direction first). A
// silence-based guess sent 25 requests twice in the failover suite's
// partition. New connections leave such a session early instead (Stalled).
func (s *Stream) Retryable() bool {
	<-s.done // a failed write means the answer (or the failure) is coming
	if s.err != nil {
		var re *RefusedError
		return errors.As(s.err, &re) || s.written.Load() == 0 || s.c.goneAway()
	}
	return s.written.Load() == 0 && s.read.Load() == 0
}

// failure is the error of a stream that failed before its answer.
func (s *Stream) failure() error {
	var re *RefusedError
	if errors.As(s.err, &re) {
		return re
	}
	return &StreamError{Err: s.err, Retryable: s.Retryable()}
}

// Read reads what the destination's application sent. It waits for the
// destination's answer first.
func (s *Stream) Read(b []byte) (int, error) {
	<-s.done
	if s.err != nil {
		return 0, s.failure()
	}
	n, err := s.resp.Body.Read(b)
	s.read.Add(int64(n))
	if err != nil && !errors.Is(err, io.EOF) {
		return n, &StreamError{Err: err, Retryable: s.written.Load() == 0 && s.read.Load() == 0}
	}
	return n, err
}

// Write sends b to the destination's application. On a stream opened on
// a quiet session (Config.Pipeline) it waits for the destination's answer
// first.
func (s *Stream) Write(b []byte) (int, error) {
	if s.hold {
		<-s.done
	}
	if s.answered() && s.err != nil {
		return 0, s.failure()
	}
	n, err := s.pw.Write(b)
	s.written.Add(int64(n))
	if err != nil {
		// The request body is closed when the stream ends: its answer
		// (a refusal, say) or its failure is coming, and is the reason to
		// report. Reporting the closed pipe instead made a refused stream
		// look like a broken session, which was retired and retried on a
		// new one (TestSessionStreamAuthorized, 5 of 60 runs).
		<-s.done
		if s.err != nil {
			return n, s.failure()
		}
		return n, &StreamError{Err: err}
	}
	return n, nil
}

// CloseWrite ends the stream's direction to the destination (a half-close).
func (s *Stream) CloseWrite() error {
	if s.hold {
		<-s.done
	}
	return s.pw.Close()
}

// Close ends the stream; one still open either way is reset.
func (s *Stream) Close() error {
	s.closeOnce.Do(func() {
		_ = s.pw.Close()
		s.cancel()
		go func() { // the answer, if any, is in once the request is cancelled
			<-s.done
			if s.resp != nil {
				_ = s.resp.Body.Close()
			}
		}()
		s.c.m.streamClosed(SideClient)
		s.c.release()
	})
	return nil
}

// Session is the session that carries the stream.
func (s *Stream) Session() *Client { return s.c }

// LocalAddr and RemoteAddr are those of the session's connection.
func (s *Stream) LocalAddr() net.Addr  { return s.c.conn.LocalAddr() }
func (s *Stream) RemoteAddr() net.Addr { return s.c.conn.RemoteAddr() }

// Deadlines are not supported on a stream: they fail with
// errors.ErrUnsupported. Close it to stop it.
func (s *Stream) SetDeadline(time.Time) error      { return errors.ErrUnsupported }
func (s *Stream) SetReadDeadline(time.Time) error  { return errors.ErrUnsupported }
func (s *Stream) SetWriteDeadline(time.Time) error { return errors.ErrUnsupported }
