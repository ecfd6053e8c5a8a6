package netns

import (
	"fmt"
	"os"
)

// HelperEnv names the environment variable that makes a test binary run a
// helper instead of its tests (see RunHelpers).
const HelperEnv = "STRAIT_E2E_HELPER"

// HelperFunc is the body of a helper process: it gets the arguments and
// returns the exit code.
type HelperFunc func(args []string) int

// RunHelpers lets a test binary double as the helper programs a scenario runs
// inside namespaces (a test HTTP server, a WAN link, ...). Call it first in
// TestMain: when HelperEnv names one of helpers, it runs that helper with the
// process's arguments and exits; otherwise it returns.
//
//	func TestMain(m *testing.M) {
//		netns.RunHelpers(map[string]netns.HelperFunc{"http-server": load.ServerMain})
//		os.Exit(m.Run())
//	}
func RunHelpers(helpers map[string]HelperFunc) {
	name := os.Getenv(HelperEnv)
	if name == "" {
		return
	}
	fn, ok := helpers[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "netns: unknown helper %q\n", name)
		os.Exit(2)
	}
	os.Exit(fn(os.Args[1:]))
}

// StartHelper starts the running test binary again inside the namespace as
// the helper called name (see RunHelpers), with args.
func (h *Host) StartHelper(name string, args ...string) (*Proc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("netns: own executable: %w", err)
	}
	return h.StartProc(ProcConfig{Path: exe, Args: args, Env: []string{HelperEnv + "=" + name}, Label: name})
}
