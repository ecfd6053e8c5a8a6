package proxy

// Keys of the structured log fields, stable across releases.
const (
	logDirection = "direction"
	logPeerID    = "peer_id"
	logRemote    = "remote_addr"
	// logLocal is this side's address of the connection to a destination
	// (the gateway logs it as remote_addr).
	logLocal    = "local_addr"
	logUpstream = "upstream"
	logSNI      = "sni"
	logAddr     = "addr"
	logPath     = "path"
	logCode     = "code"
	logErr      = "err"
	logBytesIn  = "bytes_in"
	logBytesOut = "bytes_out"
	logDuration = "duration"
	logReady    = "ready"
	logKey      = "key"
	logAttempt  = "attempt"
	logUpErr    = "up_err"
	logDownErr  = "down_err"
	logWant     = "want"
	logReason   = "reason"
	// logAge is how long ago the kernel accepted a connection.
	logAge            = "age"
	logConnectTimeout = "connect_timeout"
)

// Values of the direction label and log field.
const (
	dirInbound  = "inbound"
	dirOutbound = "outbound"
	// dirPassthrough is a captured connection relayed unchanged.
	dirPassthrough = "passthrough"
)

// Values of the path label: how an outbound connection reached its
// destination.
const (
	pathLocal   = "local"
	pathGateway = "gateway"
)

// Values of the result label of connections_total.
const (
	resultOK            = "ok"
	resultUnauthorized  = "unauthorized"
	resultHandshake     = "handshake_error"
	resultAppError      = "app_unreachable"
	resultRefused       = "refused"
	resultNoRoute       = "unreachable"
	resultMisrouted     = "misrouted"
	resultNoOriginalDst = "no_original_dst"
	// resultShed is an outbound connection reset because its connect
	// budget ran out (see shedReasons).
	resultShed = "shed"
	// resultUnexpectedServer is an attempt refused because the destination
	// is not the identity it must be (attempts_total).
	resultUnexpectedServer = "unexpected_server"
)
