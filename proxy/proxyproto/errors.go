package proxyproto

import "errors"

// Errors returned by Read and by Conn.Header. Malformed headers wrap
// ErrMalformed; a stream that does not start with the signature returns
// ErrNoHeader.
var (
	// ErrNoHeader means the stream does not begin with the PROXY v2
	// signature.
	ErrNoHeader = errors.New("proxyproto: no PROXY v2 header")
	// ErrMalformed means the header is present but invalid.
	ErrMalformed = errors.New("proxyproto: malformed header")
	// ErrTooLarge means the header announces more than MaxHeaderSize bytes.
	ErrTooLarge = errors.New("proxyproto: header too large")
	// ErrUnsupported means a valid header of a kind Strait does not handle
	// (UNIX sockets, datagrams, a version other than 2).
	ErrUnsupported = errors.New("proxyproto: unsupported header")
)
