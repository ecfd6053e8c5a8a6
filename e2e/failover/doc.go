// Package failover holds Strait's multi-region failover scenarios (issue 7),
// run end to end on this machine: three clusters (east, west, central) of
// network namespaces joined by WAN links with region latencies, a real
// 3-member etcd cluster in its own routed "region", and Strait running as
// users run it — `strait gateway` and `strait proxy` processes started from
// one binary built per test run, configured with files and the `strait
// export` and `strait config set` commands — in front of the e2e/load
// server as the application, which journals every request's idempotency
// key.
//
// The service hello.default is served in west and central; east callers
// prefer west (the oldest export, and the first region of the failover
// policy's regionOrder) and fail over to central. A client proxy in east has
// explicit upstreams; the load generator of package e2e/load opens 200 new
// connections per second through it and records every outcome, and the
// scenarios inject faults (SIGKILL, WAN partitions, an etcd outage, rolling
// restarts, an application crash) and check the history afterwards: a
// failure is excused only on evidence that the request was past the point
// of retry (the apps' journals, the client proxy's log), and only up to
// what could have been in flight.
//
// Every scenario appends its row (requests sent, failed, time to reroute,
// time to return) to the e2e report (load.Report, STRAIT_E2E_REPORT), so
// that one table prints at the end:
//
//	export STRAIT_E2E_REPORT=$(mktemp)
//	sudo -E go test -count=1 -timeout 10m ./e2e/failover/
//	go run ./e2e/load/cmd/e2e-table "$STRAIT_E2E_REPORT"
//
// The tests need root (network namespaces); they skip without it, and fail
// instead when CI=true. See README.md for the topology and the pass
// criteria.
package failover
