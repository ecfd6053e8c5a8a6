package kubenode

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
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

func startMountNS(ctx context.Context) (*mountNS, error) {
	var script strings.Builder
	for _, d := range maskedDirs {
		fmt.Fprintf(&script, "mount -t tmpfs -o mode=0755 strait-kubenode %s || exit 1\n", d)
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
