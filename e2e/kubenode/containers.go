package kubenode

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ErrNoContainer is returned by ContainerPIDs for a container that has no
// cgroup on the node (never started, or gone).
var ErrNoContainer = errors.New("kubenode: no such container")

// ContainerPIDs returns the host process IDs of a running container of the
// node, read from its cgroup (the kubelet's cgroupfs driver puts each
// container in <node cgroup>/kubepods/.../pod<uid>/<container ID>).
// containerID is as in a pod's status ("containerd://<id>") or bare. It is
// how a test signals a container's processes for a real fault (SIGKILL),
// since crictl is not built.
func (n *Node) ContainerPIDs(containerID string) ([]int, error) {
	id := containerID[strings.LastIndex(containerID, "/")+1:]
	if id == "" || n.cgroup == "" {
		return nil, fmt.Errorf("%w: %q", ErrNoContainer, containerID)
	}
	mounts, err := cgroupMounts()
	if err != nil {
		return nil, err
	}
	for _, mp := range mounts {
		root := filepath.Join(mp, n.cgroup)
		var dir string
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil //nolint:nilerr // cgroups come and go while we walk
			}
			if d.IsDir() && d.Name() == id {
				dir = path
				return filepath.SkipAll
			}
			return nil
		})
		if err != nil || dir == "" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		if err != nil {
			return nil, fmt.Errorf("kubenode: %w", err)
		}
		var pids []int
		for _, f := range strings.Fields(string(b)) {
			pid, err := strconv.Atoi(f)
			if err != nil {
				return nil, fmt.Errorf("kubenode: %s: %w", dir, err)
			}
			pids = append(pids, pid)
		}
		if len(pids) == 0 {
			return nil, fmt.Errorf("%w: %s has no process", ErrNoContainer, containerID)
		}
		return pids, nil
	}
	return nil, fmt.Errorf("%w: %s", ErrNoContainer, containerID)
}
