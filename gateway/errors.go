package gateway

import (
	"errors"

	"github.com/quic-go/quic-go"
)

// ErrClosed is returned by Run when it is called again after the gateway
// stopped or while it runs.
var ErrClosed = errors.New("gateway: already running or stopped")

// ErrPeerBackoff is returned when a remote gateway is not dialed because its
// last attempts failed and its backoff has not expired.
var ErrPeerBackoff = errors.New("gateway: remote gateway in backoff")

// ErrPeerConnecting is returned when a connection to a remote gateway is
// still being dialed after the time a caller may wait for it.
var ErrPeerConnecting = errors.New("gateway: remote gateway still connecting")

// ErrBadPeerRecord is returned for a Gateway record whose identity cannot be
// verified: its spiffe_id is not the cluster's gateway ID in its trust
// domain.
var ErrBadPeerRecord = errors.New("gateway: bad remote gateway record")

// QUIC application error codes on the wire. Stream codes below 0x100 are
// StreamCode values: a stream refused with a reply is also canceled with its
// code.
const (
	// StreamErrHeaderTimeout cancels a stream whose header did not arrive in
	// time.
	StreamErrHeaderTimeout quic.StreamErrorCode = 0x101
	// StreamErrReset carries a TCP reset of either side of the relay.
	StreamErrReset quic.StreamErrorCode = 0x102
	// StreamErrAbandoned cancels a stream the egress gave up on (reply
	// timeout, refused reply).
	StreamErrAbandoned quic.StreamErrorCode = 0x103
	// StreamErrReconnect cancels a stream opened on a connection past its
	// deadline (the peer certificate expired, or the maximum connection
	// age passed): the egress retries it on a new connection.
	StreamErrReconnect quic.StreamErrorCode = 0x104

	// ConnErrNone closes a connection without error.
	ConnErrNone quic.ApplicationErrorCode = 0
	// ConnErrDraining closes connections at the end of a drain.
	ConnErrDraining quic.ApplicationErrorCode = 0x201
	// ConnErrGone closes a connection to a gateway that left the snapshot.
	ConnErrGone quic.ApplicationErrorCode = 0x202
	// ConnErrUnauthorized closes a connection whose peer is not a gateway.
	ConnErrUnauthorized quic.ApplicationErrorCode = 0x203
	// ConnErrRefused closes a connection beyond MaxConnsPerPeer or after
	// shutdown began.
	ConnErrRefused quic.ApplicationErrorCode = 0x204
	// ConnErrReconnect closes a connection whose peer certificate expired
	// or whose maximum age passed: the peer's pool replaces it at once,
	// without counting a failure.
	ConnErrReconnect quic.ApplicationErrorCode = 0x205
)
