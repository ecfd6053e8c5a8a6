package proxycmd

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// InitBinary is the name of the init container's binary, which installs
// and removes the capture rules (package initcmd); Strait's image holds it
// beside strait-proxy.
const InitBinary = "strait-init"

// ErrNoInitBinary is wrapped by Main for `init` or `cleanup` when the
// strait-init binary is not beside the running one.
var ErrNoInitBinary = errors.New("no " + InitBinary + " binary beside this one")

// execInit replaces the process with the strait-init binary in the
// directory of the running one, for `init` and `cleanup` (args[0]):
// `<invocation> init <flags>` runs `strait-init <flags>`, `<invocation>
// cleanup <flags>` runs `strait-init cleanup <flags>`. The capture code
// (nftables over netlink) lives in that binary alone, so that the sidecar,
// which runs for the pod's whole life, does not carry it; pods whose init
// container an older injector wrote (`strait-proxy init ...`) keep
// working. It returns only on failure.
func execInit(invocation string, args []string) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %w", invocation, args[0], ErrNoInitBinary, err)
	}
	bin := filepath.Join(filepath.Dir(self), InitBinary)
	argv := []string{bin}
	if args[0] == "cleanup" {
		argv = append(argv, args...)
	} else {
		argv = append(argv, args[1:]...)
	}
	err = syscall.Exec(bin, argv, os.Environ())
	if errors.Is(err, syscall.ENOENT) {
		err = fmt.Errorf("%w (%s): %w", ErrNoInitBinary, bin, err)
	}
	return fmt.Errorf("%s %s: %w", invocation, args[0], err)
}
