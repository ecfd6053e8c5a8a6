package session

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"

	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// Sentinel errors of the package.
var (
	// ErrClosed is returned by Open on a session that is closed or retired.
	ErrClosed = errors.New("session: closed")
	// ErrNoALPN is returned by NewClient when the peer did not negotiate
	// ALPN on the connection (it does not speak the session mode).
	ErrNoALPN = errors.New("session: peer did not negotiate " + ALPN)
	// ErrStalled is the failure of a stream that waited for its answer,
	// with nothing of the caller's sent (Config.Pipeline), while its
	// session stalled and left a PING unanswered: the path may be dead.
	// Such a stream is retryable.
	ErrStalled = errors.New("session: no answer, and the stalled session left a PING unanswered; nothing was sent")
)

// RefusedError is a stream the destination refused before relaying any
// byte of it: the caller may not use the service on that port, the
// application is unreachable, the destination is draining. Code travels in
// the response's codeHeader (and, roughly, in its HTTP status).
type RefusedError struct {
	Code straitv1.StreamCode
	// Reason is the destination's message, if any.
	Reason string
}

func (e *RefusedError) Error() string {
	msg := "session: stream refused: " + e.Code.String()
	if e.Reason != "" {
		msg += ": " + e.Reason
	}
	return msg
}

// StreamError is a stream that failed before its destination confirmed it
// (its response) or before any byte crossed it. Retryable tells whether
// the stream may be opened again elsewhere with the bytes written to it:
// see Stream.Retryable.
type StreamError struct {
	Err       error
	Retryable bool
}

func (e *StreamError) Error() string {
	return fmt.Sprintf("session: stream failed (retryable %v): %v", e.Retryable, e.Err)
}
func (e *StreamError) Unwrap() error { return e.Err }

// codeHeader carries the StreamCode of a refusal, as its number.
const codeHeader = "Strait-Stream-Code"

// statusOf is the HTTP status that goes with a refusal code.
func statusOf(code straitv1.StreamCode) int {
	switch code {
	case straitv1.StreamCode_STREAM_CODE_UNAUTHORIZED:
		return http.StatusForbidden
	case straitv1.StreamCode_STREAM_CODE_NOT_EXPORTED:
		return http.StatusNotFound
	case straitv1.StreamCode_STREAM_CODE_NO_ENDPOINT, straitv1.StreamCode_STREAM_CODE_DRAINING:
		return http.StatusServiceUnavailable
	case straitv1.StreamCode_STREAM_CODE_BAD_REQUEST:
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

// refusalOf reads the refusal of a response that is not 200.
func refusalOf(resp *http.Response) *RefusedError {
	if n, err := strconv.Atoi(resp.Header.Get(codeHeader)); err == nil {
		if _, ok := straitv1.StreamCode_name[int32(n)]; ok && n > int(straitv1.StreamCode_STREAM_CODE_ACCEPTED) {
			return &RefusedError{Code: straitv1.StreamCode(n), Reason: resp.Status}
		}
	}
	code := straitv1.StreamCode_STREAM_CODE_INTERNAL
	switch resp.StatusCode {
	case http.StatusForbidden:
		code = straitv1.StreamCode_STREAM_CODE_UNAUTHORIZED
	case http.StatusNotFound:
		code = straitv1.StreamCode_STREAM_CODE_NOT_EXPORTED
	case http.StatusServiceUnavailable:
		code = straitv1.StreamCode_STREAM_CODE_NO_ENDPOINT
	case http.StatusBadRequest:
		code = straitv1.StreamCode_STREAM_CODE_BAD_REQUEST
	}
	return &RefusedError{Code: code, Reason: resp.Status}
}
