package kubenode

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// maskedDirs get an empty tmpfs in the node's mount namespace. The daemons
// keep state at fixed paths there (containerd's shim sockets and runc state
// under /run/containerd, the CNI result cache under /var/lib/cni, iptables'
// /run/xtables.lock, the kubelet's /var/log/containers links): with these
// masks none of it reaches the host, two nodes never share it, and all of it
// disappears with the namespace.
var maskedDirs = []string{"/run", "/var/lib", "/var/log"}

// kubeletSysctls are the kernel settings the kubelet sets at start
// (pkg/kubelet/cm/container_manager_linux.go, setupKernelTunables: it fails
// when it cannot). They are host-wide, not per network namespace, and would
// change the behaviour of the whole machine (panic_on_oops) for every other
// test running on it. In the node's mount namespace a file holding the
// value the kubelet wants is bound over each of them: the kubelet reads what
// it expects, writes nothing, and the host's kernel is never touched. Pods
// mount a /proc of their own and see the real values.
var kubeletSysctls = map[string]string{
	"vm/overcommit_memory":      "1",
	"vm/panic_on_oom":           "0",
	"kernel/panic":              "10",
	"kernel/panic_on_oops":      "1",
	"kernel/keys/root_maxkeys":  "1000000",
	"kernel/keys/root_maxbytes": "25000000",
}

// mountNS is a private mount namespace kept alive by a holder process. The
// node's daemons join it (nsenter --mount), so that their mounts (overlay
// root filesystems, pod volumes, network namespace handles, the kubelet's
// shared root) stay off the host and vanish when the last of them exits.
// Propagation is slave: host mounts still appear inside, none leave it.
type mountNS struct {
	cmd  *exec.Cmd
	id   string // "mnt:[inode]"
	done chan struct{}
}

// startMountNS starts the namespace; sysctlDir receives the files bound
// over the kubelet's sysctls.
func startMountNS(ctx context.Context, sysctlDir string) (*mountNS, error) {
	var script strings.Builder
	for _, d := range maskedDirs {
		fmt.Fprintf(&script, "mount -t tmpfs -o mode=0755 strait-kubenode %s || exit 1\n", d)
	}
	if err := os.MkdirAll(sysctlDir, 0o755); err != nil {
		return nil, fmt.Errorf("kubenode: mount namespace: %w", err)
	}
	keys := make([]string, 0, len(kubeletSysctls))
	for k := range kubeletSysctls {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		file := filepath.Join(sysctlDir, strings.ReplaceAll(k, "/", "."))
		if err := os.WriteFile(file, []byte(kubeletSysctls[k]+"\n"), 0o644); err != nil {
			return nil, fmt.Errorf("kubenode: mount namespace: %w", err)
		}
		fmt.Fprintf(&script, "mount --bind %s /proc/sys/%s || exit 1\n", file, k)
	}
	script.WriteString("echo ready\nexec sleep infinity\n")
	cmd := exec.Command("unshare", "--mount", "--propagation", "slave", "--", "sh", "-c", script.String())
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("kubenode: mount namespace: %w", err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("kubenode: mount namespace: %w", err)
	}
	m := &mountNS{cmd: cmd, done: make(chan struct{})}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		ok := sc.Scan() && sc.Text() == "ready"
		ready <- ok
	}()
	go func() {
		_ = cmd.Wait()
		close(m.done)
	}()
	select {
	case ok := <-ready:
		if !ok {
			m.kill()
			return nil, fmt.Errorf("kubenode: mount namespace: holder failed: %s", strings.TrimSpace(stderr.String()))
		}
	case <-ctx.Done():
		m.kill()
		return nil, fmt.Errorf("kubenode: mount namespace: %w", ctx.Err())
	}
	id, err := os.Readlink("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/ns/mnt")
	if err != nil {
		m.kill()
		return nil, fmt.Errorf("kubenode: mount namespace: %w", err)
	}
	m.id = id
	return m, nil
}

// path is the namespace's handle for nsenter --mount.
func (m *mountNS) path() string {
	return "/proc/" + strconv.Itoa(m.cmd.Process.Pid) + "/ns/mnt"
}

// wrap returns the nsenter command line that runs bin with args inside the
// namespace.
func (m *mountNS) wrap(bin string, args ...string) (string, []string) {
	return "nsenter", append([]string{"--mount=" + m.path(), "--", bin}, args...)
}

func (m *mountNS) kill() {
	_ = syscall.Kill(-m.cmd.Process.Pid, syscall.SIGKILL)
	<-m.done
}
