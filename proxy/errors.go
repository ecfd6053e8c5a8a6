package proxy

import (
	"errors"
	"fmt"

	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// Sentinel errors of the proxy.
var (
	// ErrUnauthorized is wrapped by the inbound handshake error when the
	// caller's SPIFFE ID may not consume the service.
	ErrUnauthorized = errors.New("proxy: caller not authorized")
	// ErrNoCandidate is wrapped by a RouteError with code NO_ENDPOINT when
	// the snapshot offers neither a ready local endpoint nor a gateway.
	ErrNoCandidate = errors.New("proxy: no endpoint or gateway to try")
	// ErrAlreadyStarted is returned by a second call to Run.
	ErrAlreadyStarted = errors.New("proxy: already started")
	// ErrUnexpectedServer means the destination's SPIFFE ID is not one the
	// outbound side accepts for the service.
	ErrUnexpectedServer = errors.New("proxy: unexpected server identity")
	// ErrMisrouted means an inbound connection named another service in its
	// SNI.
	ErrMisrouted = errors.New("proxy: connection is for another service")
)

// RouteError is an outbound connection that could not be routed: a gateway
// refused it (with the plaintext refusal alert), the destination proxy
// refused the caller (a TLS alert, mapped to UNAUTHORIZED), or there was no
// candidate at all.
type RouteError struct {
	// Code says why.
	Code straitv1.StreamCode
	// Addr is the candidate that refused, if any.
	Addr string
	// Err is the underlying error, if any.
	Err error
}

func (e *RouteError) Error() string {
	msg := "proxy: route refused: " + e.Code.String()
	if e.Addr != "" {
		msg += " by " + e.Addr
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns the underlying error.
func (e *RouteError) Unwrap() error { return e.Err }

// Retryable reports whether another candidate may succeed: the refusing
// gateway had no endpoint or was draining, or failed internally.
func (e *RouteError) Retryable() bool {
	switch e.Code {
	case straitv1.StreamCode_STREAM_CODE_NO_ENDPOINT,
		straitv1.StreamCode_STREAM_CODE_DRAINING,
		straitv1.StreamCode_STREAM_CODE_INTERNAL:
		return true
	}
	return false
}

// retryable reports whether an attempt that failed with err, before any byte
// of the destination reached the application, may move to the next
// candidate. Everything but a definitive refusal may.
func retryable(err error) bool {
	var re *RouteError
	if errors.As(err, &re) {
		return re.Retryable()
	}
	return true
}

// wrapf prefixes an error with the package name.
func wrapf(format string, args ...any) error {
	return fmt.Errorf("proxy: "+format, args...)
}
