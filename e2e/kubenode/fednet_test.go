//go:build kubenode

package kubenode_test

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// podNet is what a failed request's evidence needs beyond the logs: the
// kernel's TCP counters of the client pod's network namespace (where the
// load and its sidecar meet on loopback) and the sidecar's restarts. A
// reset that no sidecar log line names came from the kernel or from a
// sidecar that restarted; these tell which.
type podNet struct {
	pid      int              // a process of the sidecar, in the pod's namespace
	restarts int32            // of the sidecar container
	counters map[string]int64 // /proc/<pid>/net/{snmp,netstat}
}

// podNetOf reads the client pod's sidecar restarts and its namespace's TCP
// counters.
func (f *fed) podNetOf(ctx context.Context, pod string) (podNet, error) {
	p, err := f.nodes["east"].Client().CoreV1().Pods("demo").Get(ctx, pod, metav1.GetOptions{})
	if err != nil {
		return podNet{}, err
	}
	var pn podNet
	var id string
	for _, c := range p.Status.ContainerStatuses {
		if c.Name == "strait-proxy" {
			id, pn.restarts = c.ContainerID, c.RestartCount
		}
	}
	pids, err := f.nodes["east"].ContainerPIDs(id)
	if err != nil {
		return pn, err
	}
	pn.pid = pids[0]
	pn.counters = map[string]int64{}
	for _, file := range []string{"snmp", "netstat"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pn.pid, file))
		if err != nil {
			return pn, err
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		for i := 0; i+1 < len(lines); i += 2 {
			names, values := strings.Fields(lines[i]), strings.Fields(lines[i+1])
			if len(names) != len(values) || len(names) == 0 {
				continue
			}
			proto := strings.TrimSuffix(names[0], ":")
			if proto != "Tcp" && proto != "TcpExt" {
				continue
			}
			for j := 1; j < len(names); j++ {
				if v, err := strconv.ParseInt(values[j], 10, 64); err == nil {
					pn.counters[proto+"."+names[j]] = v
				}
			}
		}
	}
	return pn, nil
}

// diff lists the counters that grew since before, as "name +delta".
func (pn podNet) diff(before podNet) string {
	var out []string
	for k, v := range pn.counters {
		if d := v - before.counters[k]; d != 0 && !strings.HasPrefix(k, "Tcp.CurrEstab") {
			out = append(out, fmt.Sprintf("%s %+d", k, d))
		}
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}
