package gateway

// Log field keys. They are stable: dashboards and alerts match on them.
const (
	logCluster     = "cluster"
	logGatewayID   = "gateway_id"
	logPeer        = "peer"
	logPeerCluster = "peer_cluster"
	logPeerAddr    = "peer_addr"
	logServerName  = "server_name"
	logService     = "service"
	logCode        = "code"
	logEndpoint    = "endpoint"
	logAddr        = "addr"
	logErr         = "err"
	logWant        = "want_bytes"
	logRcvBuf      = "receive_buffer_bytes"
	logSndBuf      = "send_buffer_bytes"
	logStreams     = "active_streams"
	logAttempt     = "attempt"
	logConns       = "connections"
	logConn        = "conn"
	logFailures    = "consecutive_failures"
	logRetryIn     = "retry_in"
	logSent        = "sent_bytes"
	logReceived    = "received_bytes"
	// logRemote is the address of a proxy's TCP connection, as the
	// proxies log it.
	logRemote   = "remote_addr"
	logStream   = "stream_id"
	logDuration = "duration"
	// logTimes is a relay's timing (relayTimes).
	logTimes = "relay_ms"
)
