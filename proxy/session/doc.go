// Package session carries many connections between two proxies inside one
// long-lived inner mTLS connection, a session, so that a new connection
// costs the caller one round trip (its request out, the answer back)
// instead of a handshake first.
//
// A session is HTTP/2 (golang.org/x/net/http2) over the inner TLS 1.3
// connection, selected by ALPN "strait-session/1"; each connection is one
// CONNECT stream whose authority names the destination service and port,
// as HBONE does. Why HTTP/2 rather than a multiplexer of Strait's own: it
// brings per-stream and per-session flow control, resets, GOAWAY, PINGs for
// liveness and a cap on concurrent streams, all implemented and fuzzed
// upstream; the sidecar links the package already (grpc's framer). The
// price is a half-close: an answer cannot end while the request goes on,
// so a stream ends when the destination's application ends its side (TCP
// keeps the other direction open; an application that half-closes its
// sending side and goes on reading is the one case that behaves
// differently), and HTTP/2 framing adds 9 bytes per frame.
//
// The client (Client, Stream, Pool) sends a stream's first bytes with its
// CONNECT request, without waiting for the answer, on a session that heard
// from its peer in the last two round trips (Config.Pipeline; a session's
// first stream, opened as its handshake completes, always does; on a
// quieter one they wait for the answer, so that a session whose path died unnoticed
// costs a retry, not a failure: a held stream with no answer after three
// round trips, at least 100ms, on a session that heard nothing that long
// sends a PING, and gives up with nothing sent when that goes unanswered
// for four round trips, at least 1s, ErrStalled). Until the answer comes, those bytes are kept by the caller
// (Stream.Tentative); a refusal, or a failure before any
// of them went out, lets it send them elsewhere (Stream.Retryable). A
// failure after they went out and before the answer is not retried: the
// request may have reached the application (at most once). New streams
// leave a session whose stream has waited more than three round trips for
// its answer (Client.Stalled); a session whose PINGs go unanswered
// (Config.PingAfter, PingTimeout) is closed. The server
// (Server) authorizes every stream with the caller's Accept, which returns
// the application connection, answers 200 and relays; a refusal answers
// with a StreamCode (header Strait-Stream-Code) and no byte reaches the
// application. Sessions are pooled by Key (the caller's identity and the
// destination; a session never carries another caller's stream), capped
// in streams, and spread: a key opens another session rather than put
// more than Config.StreamsPerSession streams on one, up to
// Config.MaxSessions (several TLS connections and tunnel streams, as
// many connections would have; through a gateway, the ingress picks each
// session's endpoint), and a new stream goes to the least loaded session.
// A session its key no longer needs closes after a second without
// streams, and any session after Config.IdleTimeout; each is closed when
// the peer's certificate expires after taking no stream from
// Config.RenewBefore earlier.
//
//	pool := session.NewPool(session.Config{}, metrics)
//	st := pool.Open(key, target, allowed)
//	if st == nil { // no usable session: open one
//		conn := tls.Client(raw, cfgWithNextProtos) // NextProtos: session.ALPN
//		// handshake ...
//		c, err := session.NewClient(conn, pool.Config(), metrics, rtt, ownNotAfter)
//		// err is session.ErrNoALPN from a proxy without sessions: use conn itself
//		st = pool.Add(key, c, target)
//	}
//	// st is a net.Conn to the destination's application
//
// On the destination, after a handshake that negotiated ALPN:
//
//	srv.ServeConn(ctx, conn, func(ctx context.Context, target string) (net.Conn, func(session.Result), error) {
//		// authorize the session's peer for target, dial the application
//	})
package session
