package netns

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/hashicorp/go-multierror"
)

// OwnerDir holds one file per live topology, named by its prefix, with the
// owning process's ID and start time.
const OwnerDir = "/run/strait-e2e"

// Sweep deletes every namespace whose name starts with prefix+"-" after
// killing the processes inside it. Use it for one topology's leftovers; it
// does not check whether the owner still runs.
func Sweep(ctx context.Context, prefix string) error {
	if !nameRE.MatchString(prefix) {
		return fmt.Errorf("%w: prefix %q", ErrInvalidSpec, prefix)
	}
	names, err := listNS(ctx)
	if err != nil {
		return err
	}
	var errs *multierror.Error
	for _, ns := range names {
		if strings.HasPrefix(ns, prefix+"-") {
			if err := deleteNS(ctx, ns); err != nil {
				errs = multierror.Append(errs, err)
			}
		}
	}
	if err := removeOwner(prefix); err != nil {
		errs = multierror.Append(errs, err)
	}
	return errs.ErrorOrNil()
}

// SweepStale sweeps the topologies whose owner process is gone (a crashed or
// killed test run) and returns their prefixes. Topologies of running
// processes are left alone, so it is safe while other tests run.
func SweepStale(ctx context.Context) ([]string, error) {
	entries, err := os.ReadDir(OwnerDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("netns: %w", err)
	}
	var swept []string
	var errs *multierror.Error
	for _, e := range entries {
		prefix := e.Name()
		b, err := os.ReadFile(filepath.Join(OwnerDir, prefix))
		if err != nil {
			continue
		}
		if ownerAlive(strings.TrimSpace(string(b))) {
			continue
		}
		if err := Sweep(ctx, prefix); err != nil {
			errs = multierror.Append(errs, err)
			continue
		}
		swept = append(swept, prefix)
	}
	return swept, errs.ErrorOrNil()
}

func writeOwner(prefix string) error {
	if err := os.MkdirAll(OwnerDir, 0o755); err != nil {
		return fmt.Errorf("netns: %w", err)
	}
	pid := os.Getpid()
	id := strconv.Itoa(pid) + " " + procStart(pid)
	if err := os.WriteFile(filepath.Join(OwnerDir, prefix), []byte(id+"\n"), 0o644); err != nil {
		return fmt.Errorf("netns: %w", err)
	}
	return nil
}

func removeOwner(prefix string) error {
	err := os.Remove(filepath.Join(OwnerDir, prefix))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("netns: %w", err)
	}
	return nil
}

// ownerAlive reports whether "pid starttime" names a running process.
func ownerAlive(id string) bool {
	pidStr, start, _ := strings.Cut(id, " ")
	pid, err := strconv.Atoi(pidStr)
	if err != nil {
		return false
	}
	return procStart(pid) != "" && procStart(pid) == start
}

// procStart returns a process's start time in clock ticks, or "".
func procStart(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	// The command name may hold spaces; fields resume after its ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return ""
	}
	fields := strings.Fields(string(b[i+1:]))
	if len(fields) < 20 {
		return ""
	}
	return fields[19] // field 22 of stat: starttime
}

// listNS returns the names of all named network namespaces.
func listNS(ctx context.Context) ([]string, error) {
	out, err := exec.CommandContext(ctx, "ip", "netns", "list").Output()
	if err != nil {
		return nil, fmt.Errorf("netns: ip netns list: %w", err)
	}
	var names []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names, nil
}

// nsPids returns the processes inside ns.
func nsPids(ctx context.Context, ns string) ([]int, error) {
	out, err := exec.CommandContext(ctx, "ip", "netns", "pids", ns).Output()
	if err != nil {
		if _, statErr := os.Stat("/run/netns/" + ns); errors.Is(statErr, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("netns: ip netns pids %s: %w", ns, err)
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil && pid != os.Getpid() {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}
