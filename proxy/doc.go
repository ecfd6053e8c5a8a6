// Package proxy is the per-workload proxy: it accepts the workload's outbound
// connections, dials a healthy local endpoint or hands the connection to the
// cluster's gateway, and terminates inbound mTLS for the workload, telling it
// the caller's SPIFFE ID with the PROXY protocol v2.
//
// # Outbound
//
// Each Upstream is a listener the application connects to. For every
// connection the proxy lists candidates from the newest federation snapshot:
// this cluster's ready endpoints of the service (the first chosen by the
// power of two choices on outstanding connections, the rest by load), then
// this cluster's egress gateways. It opens the inner TLS 1.3 connection with
// the workload's SVID and the destination's name in the SNI,
// "<port>.<service>.<namespace>.<cluster or any>.strait". Who may answer is
// the export's servers policy (federation.ServerPolicy: workloads of the
// service's namespace in the exporting cluster's trust domain, narrowed to
// Export.servers): a local endpoint is dialed only when the SPIFFE ID its
// record names is allowed, judged with this proxy's own trust domain, and
// must then present exactly that ID; through a gateway the server must be one
// an export of the service allows. A trust domain alone is never enough. Any
// other server fails the handshake (*trust.UnexpectedServerError, counted as
// unexpected_server, WARN) before a byte of the application's is written. An
// attempt that fails before the handshake completes — connection refused,
// gateway gone, an unexpected server, or a gateway refusal with NO_ENDPOINT,
// DRAINING or INTERNAL — moves on to the next candidate; the application's
// bytes are read only once a handshake has succeeded, so nothing is lost.
//
// Every outbound connection has a connect budget, Config.ConnectTimeout
// (one whole attempt, 8 s, by default), counted from the kernel's accept (TCP_INFO), so that
// the time it waited in the listener's accept queue or for the CPU counts:
// no attempt starts or goes on past it, and a connection that runs out is
// reset and counted in strait_proxy_shed_connections_total by reason
// (stale: before any attempt; deadline: during or between attempts). It
// stands for the caller's patience, which a proxy cannot see: without it, a
// proxy that had been stopped or starved of CPU went on dialing,
// handshaking and retrying for callers long gone, and new connections
// waited behind them and failed in turn after the starvation had ended.
//
// A gateway that cannot route answers the ClientHello with one plaintext
// TLS alert record whose description is 224+StreamCode (gateway/tunnel);
// the proxy turns it into a *RouteError. A destination proxy that refuses
// the caller sends a TLS alert (bad_certificate) after the handshake, which
// is reported as a RouteError with code UNAUTHORIZED.
//
// # Sessions
//
// With Config.Sessions set to SessionsOn, the inner handshake offers ALPN
// "strait-session/1" (package proxy/session) and a destination that
// accepts it turns the connection into a pooled session: HTTP/2 over the
// inner mTLS, each later application connection one CONNECT stream inside
// it, so that a new connection to a warm destination costs one round trip
// instead of two, and no handshake on either side. A session travels
// through the gateways as one connection routed by its ClientHello, and
// the ingress picks its endpoint when it opens. Sessions are keyed by the
// caller's SPIFFE ID (the identity of the handshake: a session never
// carries another caller's stream), the path, the candidate's address and
// the service and cluster asked for; spread (another session opens
// rather than put more than session.Config.StreamsPerSession streams on
// one, up to MaxSessions per key; through a gateway each session's
// endpoint is the ingress' choice), new streams to the least loaded,
// capped in streams, closed when idle (a key's extra ones after a second),
// closed when the peer's certificate expires and replaced before either
// certificate does (session.Config). A destination authorizes every stream
// as it authorizes a connection (its SNI grammar, a port of the service,
// the caller against the export's consumers now) and tells the application
// the caller's SPIFFE ID in the PROXY header; a refusal is an answer with
// a StreamCode, before any byte reaches the application. A stream refused
// with a retryable code, or failed before the destination's answer with
// none of the application's bytes sent (session.Stream.Retryable), moves
// on with them, to a new session on the same candidate (the failed session
// is retired) or to the next candidate; one whose bytes went out is not
// sent twice. New connections leave a stalled session after a few round
// trips. A stream's bytes go out after the destination's answer (two round
// trips, and a path that died fails no new connection) unless
// Config.SessionPipeline is PipelineOn: then they go with the request on a
// session that heard from its peer lately (one round trip; when the path
// dies unnoticed, the streams opened meanwhile fail, at most once). Sessions through a draining egress gateway,
// or to a cluster one of whose gateways drains, are retired (swept every
// 100ms), and a session takes new streams for session.Config.MaxAge only,
// so that traffic follows the federation's preferences again. A peer without
// sessions, either side, gets one handshake per connection, so a
// federation of mixed versions keeps working.
//
// # Inbound
//
// The inbound listener serves TLS 1.3 with the workload's SVID, verifies
// the caller against its own trust domain's bundle and authorizes it:
// callers of this cluster's trust domain always, others when the service's
// export lists their SPIFFE ID or trust domain in Export.consumers. It then
// connects to the application and writes a PROXY v2 header carrying the
// caller's address, its SPIFFE ID (TLV 0xE0) and the SNI (authority TLV)
// before relaying bytes both ways with half-close.
//
// Active health checks (TCP connect or HTTP GET, each starting with a LOCAL
// PROXY header) drive the Endpoint record's ready field, which the proxy
// keeps in the Registry and withdraws on shutdown.
//
// # Use
//
//	p, err := proxy.New(proxy.Config{
//		Cluster:           "west",
//		Service:           "payments",
//		InboundListenAddr: "0.0.0.0:15006",
//		AppAddr:           "127.0.0.1:8080",
//		Upstreams:         []proxy.Upstream{up}, // from proxy.ParseUpstream("ledger.default:9000=127.0.0.1:19000")
//		SVIDs:             svids,                // x509svid.Source
//		Bundles:           bundles,              // x509bundle.Source
//		Snapshots:         cache,                // federation.SnapshotSource
//		Registry:          registrar,            // federation.Registry
//	})
//	if err != nil {
//		return err
//	}
//	go func() { <-p.Ready(); log.Print("inbound on ", p.InboundAddr()) }()
//	return p.Run(ctx) // drains on cancel
//
// # Transparent capture
//
// Inside a pod's network namespace, nft.Install (package capture/nft, run
// by the init container's strait-init; nftables rules programmed over
// netlink) redirects outbound TCP to the
// proxy's transparent listener and DNS to a dns.Server, which answers
// <service>.<namespace>.svc.clusterset.local with a virtual IP;
// nft.Cleanup (`strait-init cleanup`) removes the rules. The proxy
// routes a captured connection to a virtual IP like an upstream connection
// (on the original port) and relays anything else unchanged; it marks its
// own connections with Config.Mark so they are not captured again (a proxy
// without CAP_NET_ADMIN, as an injected sidecar, leaves Mark zero and runs
// in a group that capture.Config.ExcludeGIDs names instead):
//
//	resolver, _ := dns.New(dns.Config{Services: cache, Mark: capture.DefaultMark})
//	p, _ := proxy.New(proxy.Config{ /* as above */
//		Mark:        capture.DefaultMark,
//		Transparent: &proxy.Transparent{Services: resolver.VIPs()},
//	})
//	// run resolver.Run and p.Run; once both are ready:
//	err := nft.Install(ctx, capture.Config{})
package proxy
