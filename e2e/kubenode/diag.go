package kubenode

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PodReport describes the pods of namespace matching selector: phase,
// container states and the end of each container's log (of the previous
// run when it restarted), for the error of a wait that timed out.
func (n *Node) PodReport(ctx context.Context, namespace, selector string) string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	pods, err := n.client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return fmt.Sprintf("listing pods: %v", err)
	}
	var b strings.Builder
	for _, p := range pods.Items {
		fmt.Fprintf(&b, "pod %s/%s: %s %s\n", p.Namespace, p.Name, p.Status.Phase, p.Status.Reason)
		for _, c := range p.Status.Conditions {
			if c.Status != corev1.ConditionTrue && c.Message != "" {
				fmt.Fprintf(&b, "  %s: %s\n", c.Type, c.Message)
			}
		}
		statuses := append(append([]corev1.ContainerStatus(nil), p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...)
		for _, cs := range statuses {
			fmt.Fprintf(&b, "  container %s: restarts %d, state %s\n", cs.Name, cs.RestartCount, containerState(cs.State))
			opts := &corev1.PodLogOptions{Container: cs.Name, Previous: cs.RestartCount > 0, TailLines: ptrTo(int64(15))}
			logs, err := n.client.CoreV1().Pods(p.Namespace).GetLogs(p.Name, opts).DoRaw(ctx)
			if err != nil {
				fmt.Fprintf(&b, "  log: %v\n", err)
				continue
			}
			fmt.Fprintf(&b, "  log:\n    %s\n", strings.ReplaceAll(strings.TrimSpace(string(logs)), "\n", "\n    "))
		}
	}
	return b.String()
}

func containerState(s corev1.ContainerState) string {
	switch {
	case s.Running != nil:
		return "running"
	case s.Waiting != nil:
		return "waiting: " + s.Waiting.Reason + " " + s.Waiting.Message
	case s.Terminated != nil:
		return fmt.Sprintf("terminated: %s (exit %d) %s", s.Terminated.Reason, s.Terminated.ExitCode, s.Terminated.Message)
	}
	return "unknown"
}

func ptrTo[T any](v T) *T { return &v }
