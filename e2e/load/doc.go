// Package load generates and records traffic for Strait's failover scenarios,
// Jepsen-style: every request carries an idempotency key, every outcome is
// kept in a History, and the checks run against the history afterwards.
//
// A Generator opens a new TCP connection at a fixed rate (default 200 per
// second), sends one HTTP/1.1 request on it and reads the response, and
// records the outcome: ok, or an error kind (connect_refused, connect_timeout,
// unreachable, reset, timeout, status_NNN, bad_response), the latency, and
// which cluster answered (parsed from the body; see ParseCluster). A Server
// answers such requests with its cluster and host names, counts duplicate
// keys, and runs in-process or as a re-exec helper (ServerMain) inside a
// namespace. Behind a Strait proxy it reads the PROXY v2 header and names
// the caller's SPIFFE ID; with a Journal it writes every key it receives
// before answering, so that a failed request can be told delivered (its key
// is in a journal: only the answer was lost) from never delivered
// (ReadJournal, History.SplitReached).
//
//	gen, _ := load.NewGenerator(load.Config{Target: link.Addr().String(), Dial: client.DialContext})
//	go gen.Run(ctx)
//	... inject a fault at t0, heal at t1 ...
//	h := gen.History()
//	sum := h.Summary()                      // sent, failed, p50/p99, first/last failure
//	reroute, _ := h.FirstOKFrom(t0, "central") // time to reroute
//	back, _ := h.FirstOKFrom(t1, "west")       // time to return
//
// Real clients (curl, wrk, iperf3) run inside namespaces through Curl, Wrk and
// Iperf3.
package load
