package kubenode

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-multierror"
	"golang.org/x/sys/unix"

	"github.com/strait-mesh/strait/e2e/wait"
)

// StateDir records the nodes running on this host, so that what a crashed
// run leaves behind (container processes, cgroups, state directories) is
// removed by the next run.
const StateDir = "/run/strait-kubenode"

// owner is the record of one running node.
type owner struct {
	ID      string `json:"id"`
	PID     int    `json:"pid"`
	Start   string `json:"start"`   // the owning process's start time, in clock ticks
	Cgroup  string `json:"cgroup"`  // the node's cgroup root, e.g. /strait-kubenode-east-1234
	Dir     string `json:"dir"`     // the node's state directory, removed with it
	OwnDir  bool   `json:"own_dir"` // whether Dir was created for the node
	MountNS string `json:"mountns"` // "mnt:[inode]" of the node's mount namespace, once known
}

// hostState serializes changes to StateDir between processes.
type hostState struct{ lock *os.File }

func lockState() (*hostState, error) {
	if err := os.MkdirAll(StateDir, 0o755); err != nil {
		return nil, fmt.Errorf("kubenode: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(StateDir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("kubenode: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("kubenode: lock %s: %w", StateDir, err)
	}
	return &hostState{lock: f}, nil
}

func (s *hostState) unlock() { s.lock.Close() }

func ownerPath(id string) string { return filepath.Join(StateDir, id+".json") }

func (s *hostState) owners() ([]owner, error) {
	paths, err := filepath.Glob(filepath.Join(StateDir, "*.json"))
	if err != nil {
		return nil, fmt.Errorf("kubenode: %w", err)
	}
	var out []owner
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		var o owner
		if err := json.Unmarshal(b, &o); err != nil || o.ID == "" {
			_ = os.Remove(p) // junk from an interrupted write
			continue
		}
		out = append(out, o)
	}
	return out, nil
}

func (s *hostState) writeOwner(o owner) error {
	b, err := json.Marshal(o)
	if err != nil {
		return fmt.Errorf("kubenode: %w", err)
	}
	tmp := ownerPath(o.ID) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("kubenode: %w", err)
	}
	if err := os.Rename(tmp, ownerPath(o.ID)); err != nil {
		return fmt.Errorf("kubenode: %w", err)
	}
	return nil
}

// sweepLocked removes the leftovers of nodes whose owner process is gone and
// returns their IDs.
func (s *hostState) sweepLocked(ctx context.Context) ([]string, error) {
	owners, err := s.owners()
	if err != nil {
		return nil, err
	}
	var swept []string
	var errs *multierror.Error
	for _, o := range owners {
		if procStart(o.PID) != "" && procStart(o.PID) == o.Start {
			continue
		}
		if err := cleanupNode(ctx, o); err != nil {
			errs = multierror.Append(errs, err) // its record stays for the next sweep
			continue
		}
		if err := os.Remove(ownerPath(o.ID)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = multierror.Append(errs, fmt.Errorf("kubenode: %w", err))
		}
		swept = append(swept, o.ID)
	}
	return swept, errs.ErrorOrNil()
}

// SweepStale removes what nodes of crashed or killed processes left on the
// host: their container processes and cgroups, every process still in their
// mount namespaces, their state directories. Nodes of running processes
// are left alone, so it is safe while other tests run. (Their network
// namespaces are netns's: netns.SweepStale removes them.)
func SweepStale(ctx context.Context) ([]string, error) {
	s, err := lockState()
	if err != nil {
		return nil, err
	}
	defer s.unlock()
	return s.sweepLocked(ctx)
}

// cleanupNode kills every process of a node that is not running under the
// control of a live owner and removes its cgroups and state directory.
func cleanupNode(ctx context.Context, o owner) error {
	var errs *multierror.Error
	if o.MountNS != "" {
		if err := killMountNS(ctx, o.MountNS); err != nil {
			errs = multierror.Append(errs, err)
		}
	}
	if o.Cgroup != "" {
		if err := removeCgroup(ctx, o.Cgroup); err != nil {
			errs = multierror.Append(errs, err)
		}
	}
	if o.OwnDir && o.Dir != "" {
		if err := os.RemoveAll(o.Dir); err != nil {
			errs = multierror.Append(errs, fmt.Errorf("kubenode: remove %s: %w", o.Dir, err))
		}
	}
	return errs.ErrorOrNil()
}

// procStart returns a process's start time in clock ticks, or "".
func procStart(pid int) string {
	if pid <= 0 {
		return ""
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	i := bytes.LastIndexByte(b, ')') // the command name may hold spaces
	if i < 0 {
		return ""
	}
	fields := strings.Fields(string(b[i+1:]))
	if len(fields) < 20 {
		return ""
	}
	return fields[19]
}

// killMountNS kills every process in the mount namespace ns ("mnt:[inode]")
// and waits until none is left: the namespace, and every mount the node's
// daemons made in it, then go away.
func killMountNS(ctx context.Context, ns string) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var left []int
	err := wait.Until(ctx, 20*time.Millisecond, func(context.Context) (bool, error) {
		left = pidsWhere(func(pid string) bool {
			l, err := os.Readlink("/proc/" + pid + "/ns/mnt")
			return err == nil && l == ns
		})
		for _, pid := range left {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		return len(left) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("kubenode: processes %v of mount namespace %s survive SIGKILL: %w", left, ns, err)
	}
	return nil
}

// pidsWhere returns the processes (other than this one) for which keep is
// true.
func pidsWhere(keep func(pid string) bool) []int {
	entries, _ := os.ReadDir("/proc")
	self := os.Getpid()
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		if keep(e.Name()) {
			out = append(out, pid)
		}
	}
	return out
}

// cgroupMounts returns the mount points of the host's cgroup hierarchies
// (v1 controllers and named hierarchies, or the v2 unified one).
func cgroupMounts() ([]string, error) {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return nil, fmt.Errorf("kubenode: %w", err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && (f[2] == "cgroup" || f[2] == "cgroup2") {
			out = append(out, f[1])
		}
	}
	return out, nil
}

// createCgroup creates the node's cgroup root in every hierarchy (the
// kubelet refuses a cgroupRoot that does not exist). A new cpuset cgroup
// starts without CPUs or memory nodes: it gets its parent's.
func createCgroup(root string) error {
	mounts, err := cgroupMounts()
	if err != nil {
		return err
	}
	for _, mp := range mounts {
		dir := filepath.Join(mp, root)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("kubenode: cgroup %s: %w", dir, err)
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			parent, err := os.ReadFile(filepath.Join(mp, f))
			if err != nil {
				continue // not the cpuset hierarchy
			}
			if err := os.WriteFile(filepath.Join(dir, f), parent, 0o644); err != nil {
				return fmt.Errorf("kubenode: cgroup %s: %w", filepath.Join(dir, f), err)
			}
		}
	}
	return nil
}

// removeCgroup kills every process in the node's cgroup trees (the pods'
// containers, which live in namespaces of their own) and removes the trees.
func removeCgroup(ctx context.Context, root string) error {
	if root == "" || root == "/" || !strings.HasPrefix(root, "/") {
		return fmt.Errorf("%w: cgroup root %q", ErrInvalidConfig, root)
	}
	mounts, err := cgroupMounts()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var left []int
	err = wait.Until(ctx, 20*time.Millisecond, func(context.Context) (bool, error) {
		left = left[:0]
		for _, mp := range mounts {
			_ = filepath.WalkDir(filepath.Join(mp, root), func(p string, d fs.DirEntry, err error) error {
				if err != nil || !d.IsDir() {
					return nil
				}
				b, _ := os.ReadFile(filepath.Join(p, "cgroup.procs"))
				for _, f := range strings.Fields(string(b)) {
					if pid, err := strconv.Atoi(f); err == nil && pid != os.Getpid() {
						left = append(left, pid)
					}
				}
				return nil
			})
		}
		for _, pid := range left {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		return len(left) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("kubenode: processes %v of cgroup %s survive SIGKILL: %w", left, root, err)
	}
	var errs *multierror.Error
	for _, mp := range mounts {
		var dirs []string
		_ = filepath.WalkDir(filepath.Join(mp, root), func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		// Children first: a cgroup with children cannot be removed.
		sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
		for _, d := range dirs {
			if err := rmdirRetry(ctx, d); err != nil {
				errs = multierror.Append(errs, err)
			}
		}
	}
	return errs.ErrorOrNil()
}

// rmdirRetry removes a cgroup directory, retrying while the kernel still
// counts a killed process in it.
func rmdirRetry(ctx context.Context, dir string) error {
	var last error
	err := wait.Until(ctx, 20*time.Millisecond, func(context.Context) (bool, error) {
		last = unix.Rmdir(dir)
		return last == nil || errors.Is(last, unix.ENOENT), nil
	})
	if err != nil {
		return fmt.Errorf("kubenode: rmdir %s: %v: %w", dir, last, err)
	}
	return nil
}
