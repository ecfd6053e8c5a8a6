package tunnel

import (
	"errors"
	"strings"

	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// ErrFrameTooLarge is returned for a frame whose length prefix exceeds
// MaxFrameSize. Nothing beyond the prefix has been read.
var ErrFrameTooLarge = errors.New("tunnel: frame exceeds the size limit")

// ErrBadFrame is returned for a frame that is truncated or does not decode.
var ErrBadFrame = errors.New("tunnel: malformed frame")

// RefusedError reports that a gateway refused a stream or a connection with
// Code. errors.Is(err, &RefusedError{Code: c}) matches any RefusedError with
// the same code; a target without a code matches every RefusedError.
type RefusedError struct {
	Code    straitv1.StreamCode
	Message string
}

// Error implements error.
func (e *RefusedError) Error() string {
	var b strings.Builder
	b.WriteString("tunnel: refused: ")
	b.WriteString(CodeName(e.Code))
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	return b.String()
}

// Is reports whether target is a RefusedError with the same code, or one
// without a code.
func (e *RefusedError) Is(target error) bool {
	t, ok := target.(*RefusedError)
	if !ok {
		return false
	}
	return t.Code == straitv1.StreamCode_STREAM_CODE_UNSPECIFIED || t.Code == e.Code
}

// CodeName is the short, lower-case name of a code ("not_exported"), for
// messages, logs and metric labels. Unknown codes are named as INTERNAL is.
func CodeName(c straitv1.StreamCode) string {
	name, ok := straitv1.StreamCode_name[int32(Known(c))]
	if !ok {
		return "internal"
	}
	return strings.ToLower(strings.TrimPrefix(name, "STREAM_CODE_"))
}

// Known returns c if it belongs to the closed set of codes, and
// STREAM_CODE_INTERNAL otherwise, as the protocol requires of receivers.
func Known(c straitv1.StreamCode) straitv1.StreamCode {
	if c <= straitv1.StreamCode_STREAM_CODE_UNSPECIFIED || c > straitv1.StreamCode_STREAM_CODE_INTERNAL {
		return straitv1.StreamCode_STREAM_CODE_INTERNAL
	}
	return c
}
