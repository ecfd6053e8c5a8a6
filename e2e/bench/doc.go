// Package bench is Strait's side-by-side benchmark harness (issue 8): one
// invocation on one machine measures Strait's full cross-cluster path next to
// the peers a user would pick instead, with the same load generators, and
// reports every row with its ratio.
//
// What it runs, all on loopback:
//
//   - throughput of 1 and 8 TCP streams (iperf3 -P): direct, a stunnel4 TLS
//     pair, an haproxy TLS pair, a raw quic-go relay pair (rawquic, the
//     transport's ceiling) and Strait (client proxy → gateway → QUIC →
//     gateway → proxy → app);
//   - latency p50/p90/p99 of 1 KiB request/response at a fixed 1000 rps
//     (fortio), with the CPU seconds per 1000 requests and the RSS of every
//     proxy process read from /proc under that load;
//   - time to first byte of a new connection with 0 and 30 ms of round trip
//     added by the e2e WAN emulator in front of the remote side;
//   - export propagation (a write to visible in 10 watching caches) next to
//     the raw etcd watch latency.
//
// Every process it starts belongs to a [Procs] group that is stopped when
// [Run] returns, on success and on failure; the children also die with the
// harness (Pdeathsig). Every loop is bounded in count and time.
//
//	results, err := bench.Run(ctx, bench.Config{Repo: ".", Out: os.Stdout})
//
// The apps behind Strait's destination proxy receive a PROXY protocol v2
// header first, except iperf3's server, whose west proxy runs with
// noProxyHeader: true; the HTTP echo server reads the header on the listener
// Strait's proxy dials.
package bench
