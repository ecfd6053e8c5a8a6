//go:build kubenode

package kubenode_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strait-mesh/strait/e2e/kubenode"
	"github.com/strait-mesh/strait/e2e/netns"
)

func TestMain(m *testing.M) {
	netns.RunHelpers(map[string]netns.HelperFunc{"crashing-node": crashingNode})
	os.Exit(m.Run())
}

// crashingNode starts a topology and a node running a pod, prints
// "ready <state dir>", and waits to be killed.
func crashingNode(args []string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	topo, err := netns.Build(ctx, netns.Spec{Prefix: args[0], Clusters: []netns.ClusterSpec{{Name: "east", Hosts: []string{"node"}}}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	node, err := kubenode.Start(ctx, kubenode.Config{Host: topo.Host("east", "node"), BinDir: args[1]})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("ready", filepath.Dir(filepath.Dir(node.Kubeconfig())))
	select {}
}

// TestSweepAfterCrash SIGKILLs a process running a node (its CoreDNS pod
// running) and checks that the next run's sweep removes everything it left:
// the pod's processes and the shims, the cgroups, the state directory; and
// the host's kernel settings are those from before.
func TestSweepAfterCrash(t *testing.T) {
	netns.RequireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 35*time.Minute)
	defer cancel()
	bin, err := kubenode.Binaries(ctx)
	if err != nil {
		t.Fatalf("building binaries: %v", err)
	}
	before := readSysctls(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	prefix := fmt.Sprintf("sk-crash%d", os.Getpid()%100000)
	cmd := exec.CommandContext(ctx, exe, prefix, bin)
	cmd.Env = append(os.Environ(), netns.HelperEnv+"=crashing-node")
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	var dir string
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "ready "); ok {
			dir = d
			break
		}
	}
	if dir == "" {
		_ = cmd.Wait()
		t.Fatal("the helper did not start its node")
	}
	cgroups, err := filepath.Glob("/sys/fs/cgroup/*/strait-kubenode-" + filepath.Base(dir))
	if err != nil || len(cgroups) == 0 {
		t.Fatalf("no cgroup of the node (%v)", err)
	}
	seen := map[int]bool{}
	var pods []int
	for _, cg := range cgroups {
		for _, pid := range cgroupPids(cg) {
			if !seen[pid] {
				seen[pid] = true
				pods = append(pods, pid)
			}
		}
	}
	if len(pods) == 0 {
		t.Fatal("no pod process in the node's cgroups")
	}
	_ = cmd.Process.Kill() // SIGKILL: no cleanup runs
	_ = cmd.Wait()

	// What survives the crash: the pods' processes (in the node's cgroups).
	alive := 0
	for _, pid := range pods {
		if running(pid) {
			alive++
		}
	}
	t.Logf("after the crash %d of %d pod processes still run", alive, len(pods))

	swept, err := kubenode.SweepStale(ctx)
	if err != nil {
		t.Fatalf("sweep: %v", err)
	}
	if len(swept) != 1 || swept[0] != filepath.Base(dir) {
		t.Errorf("swept %v, want [%s]", swept, filepath.Base(dir))
	}
	if err := netns.Sweep(ctx, prefix); err != nil {
		t.Errorf("netns sweep: %v", err)
	}
	for _, pid := range pods {
		if running(pid) {
			t.Errorf("pod process %d survives the sweep", pid)
		}
	}
	for _, cg := range cgroups {
		if _, err := os.Stat(cg); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("cgroup %s survives the sweep (%v)", cg, err)
		}
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("state directory %s survives the sweep (%v)", dir, err)
	}
	if after := readSysctls(t); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("kernel settings changed: before %v, after %v", before, after)
	}
}

// running reports whether a process exists and is not a zombie (killed
// processes whose parent died wait for init to reap them).
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i >= 0 && !strings.HasPrefix(strings.TrimSpace(string(b[i+1:])), "Z")
}

// cgroupPids returns the processes in a cgroup tree.
func cgroupPids(root string) []int {
	var pids []int
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		b, _ := os.ReadFile(filepath.Join(p, "cgroup.procs"))
		for _, f := range strings.Fields(string(b)) {
			var pid int
			if _, err := fmt.Sscan(f, &pid); err == nil {
				pids = append(pids, pid)
			}
		}
		return nil
	})
	return pids
}
