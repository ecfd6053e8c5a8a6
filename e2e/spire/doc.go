// Package spire runs real SPIRE servers and agents for end-to-end tests:
// one server and one agent per trust domain, join-token node attestation,
// and the unix workload attestor, so that the test process itself is the
// workload and gets SVIDs from the Workload API.
//
// The binaries come from the tools module e2e/tools/spire (spire-server and
// spire-agent v1.13.3), built into e2e/tools/bin by e2e/tools/build-spire.sh,
// or from the directory named by STRAIT_SPIRE_BIN. Without them tests skip
// with a message, except when CI=true, where they fail.
//
//	bin := spire.Binaries(t)
//	srv := spire.StartServer(t, bin, "a.test")
//	agent := srv.StartAgent(t)
//	entryID := srv.CreateWorkloadEntry(t, agent, "spiffe://a.test/ns/web/sa/front")
//	// agent.SocketAddr() is the Workload API address for go-spiffe.
//
// Processes other than the test process get SVIDs of their own by running
// under their own uid: CreateUIDEntry registers an entry for the selector
// uid:<uid>, and ShareSocket lets every uid reach the agent's socket (the
// agent still attests each caller by the uid of its process).
// TestDataPathFederation runs this way: Strait gateways and proxies built
// from ./cmd/strait (or $STRAIT_E2E_STRAIT_BIN) under uids 61001-61004, so it
// also needs root; without it, it skips, or fails when CI=true.
package spire
