// Package proxy is the per-workload proxy: it accepts the workload's outbound
// connections, dials a healthy local endpoint or hands the connection to the
// cluster's gateway, and terminates inbound mTLS for the workload, telling it
// the caller's SPIFFE ID with the PROXY protocol v2.
package proxy
