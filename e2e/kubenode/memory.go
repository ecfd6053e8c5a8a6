package kubenode

import (
	"bufio"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Memory is the resident memory of a node's processes, in bytes.
type Memory struct {
	// Components maps each component ("kube-apiserver", "kubelet", …) to its
	// resident set.
	Components map[string]uint64
	// Shims is containerd's shims (one per pod) and anything else the
	// daemons started in the node's mount namespace.
	Shims uint64
	// Pods is every process in the node's cgroups: the pods' containers.
	Pods uint64
}

// Total returns the sum of all parts.
func (m Memory) Total() uint64 {
	t := m.Shims + m.Pods
	for _, v := range m.Components {
		t += v
	}
	return t
}

// Memory measures the resident memory (VmRSS) of the node's processes now.
func (n *Node) Memory() (Memory, error) {
	m := Memory{Components: map[string]uint64{}}
	counted := map[int]bool{}
	n.mu.Lock()
	for name, p := range n.procs {
		if done, _ := p.Exited(); done {
			continue
		}
		counted[p.Pid()] = true
		m.Components[name] = rss(p.Pid())
	}
	n.mu.Unlock()
	if n.mnt != nil {
		counted[n.mnt.cmd.Process.Pid] = true
		for _, pid := range pidsWhere(func(pid string) bool {
			l, err := os.Readlink("/proc/" + pid + "/ns/mnt")
			return err == nil && l == n.mnt.id
		}) {
			if !counted[pid] {
				counted[pid] = true
				m.Shims += rss(pid)
			}
		}
	}
	mounts, err := cgroupMounts()
	if err != nil {
		return m, err
	}
	for _, mp := range mounts {
		_ = filepath.WalkDir(filepath.Join(mp, n.cgroup), func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			b, _ := os.ReadFile(filepath.Join(p, "cgroup.procs"))
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil && !counted[pid] {
					counted[pid] = true
					m.Pods += rss(pid)
				}
			}
			return nil
		})
	}
	return m, nil
}

// rss returns a process's VmRSS in bytes, or 0.
func rss(pid int) uint64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) >= 1 {
				kb, _ := strconv.ParseUint(f[0], 10, 64)
				return kb * 1024
			}
		}
	}
	return 0
}
