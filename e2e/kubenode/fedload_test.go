//go:build kubenode

package kubenode_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strait-mesh/strait/e2e/load"
	"github.com/strait-mesh/strait/e2e/wait"
)

// loadRun is e2e/load's generator running in east's client pod (kubeapp
// load, through kubectl exec -i), sending new connections to the pod's
// sidecar; its records stream back as they complete.
type loadRun struct {
	pod    string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr bytes.Buffer
	done   chan error

	mu      sync.Mutex
	records load.History
	bad     []string // lines that did not decode

	net podNet // the client pod's TCP counters when the load began
}

// startLoad starts the load in east's client pod against target (the
// sidecar's upstream listener, or a captured name) and waits until it runs.
func (f *fed) startLoad(ctx context.Context, t *testing.T, target string) *loadRun {
	t.Helper()
	pods := f.runningPods(ctx, "east", "demo", "app=client")
	if len(pods) == 0 {
		t.Fatal("no client pod in east")
	}
	l := &loadRun{pod: pods[0], done: make(chan error, 1)}
	var err error
	if l.net, err = f.podNetOf(ctx, l.pod); err != nil {
		t.Logf("client pod's TCP counters: %v", err)
	}
	l.cmd = f.nodes["east"].KubectlCommand(ctx, "-n", "demo", "exec", "-i", l.pod, "-c", "curl", "--",
		"/kubeapp", "load", "-target", target, "-rate", fmt.Sprint(loadRate), "-timeout", loadTimeout.String())
	if l.stdin, err = l.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := l.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	l.cmd.Stderr = &lockedWriter{w: &l.stderr, mu: &l.mu}
	if err := l.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var r load.Record
			l.mu.Lock()
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				l.bad = append(l.bad, sc.Text())
			} else {
				l.records = append(l.records, r)
			}
			l.mu.Unlock()
		}
		l.done <- l.cmd.Wait()
	}()
	t.Cleanup(func() { l.kill() })
	l.waitFor(ctx, t, "the load's first answers", func(h load.History) bool { return okFrom(h, time.Time{}, "") >= 10 })
	return l
}

// lockedWriter serializes writes to w.
type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (lw *lockedWriter) Write(p []byte) (int, error) {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	return lw.w.Write(p)
}

// history returns the records so far, in start order.
func (l *loadRun) history() load.History {
	l.mu.Lock()
	h := slices.Clone(l.records)
	l.mu.Unlock()
	slices.SortFunc(h, func(a, b load.Record) int { return int(a.Seq - b.Seq) })
	return h
}

// waitFor polls the records until cond holds; a load that ended fails t.
func (l *loadRun) waitFor(ctx context.Context, t *testing.T, what string, cond func(load.History) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	err := wait.Until(ctx, 100*time.Millisecond, func(context.Context) (bool, error) {
		select {
		case err := <-l.done:
			l.done <- err
			return false, fmt.Errorf("the load ended: %v: %s", err, l.stderrText())
		default:
		}
		return cond(l.history()), nil
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v (%s)", what, err, l.history().Summary())
	}
}

func (l *loadRun) stderrText() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.TrimSpace(l.stderr.String())
}

// stop ends the load (the requests in flight complete) and returns its
// history.
func (l *loadRun) stop(t *testing.T) load.History {
	t.Helper()
	_, _ = io.WriteString(l.stdin, "stop\n")
	_ = l.stdin.Close()
	select {
	case err := <-l.done:
		l.done <- err
		if err != nil {
			t.Errorf("load in %s: %v: %s", l.pod, err, l.stderrText())
		}
	case <-time.After(time.Minute):
		t.Errorf("load in %s did not stop", l.pod)
		l.kill()
	}
	l.mu.Lock()
	bad := l.bad
	l.mu.Unlock()
	if len(bad) > 0 {
		t.Errorf("load in %s: %d lines that are no records, first %q", l.pod, len(bad), bad[0])
	}
	return l.history()
}

func (l *loadRun) kill() {
	if l.cmd.Process != nil {
		_ = l.cmd.Process.Kill()
	}
}

// okFrom counts the answers from cluster ("" for any) of requests started
// at or after from.
func okFrom(h load.History, from time.Time, cluster string) int {
	n := 0
	for _, r := range h {
		if r.OK() && !r.Start.Before(from) && (cluster == "" || r.Cluster == cluster) {
			n++
		}
	}
	return n
}

// failures asserts that h has no failed request, and logs each failure
// with its evidence: the record, the lines of the client's sidecar log
// that name its connection's local port, and the warnings east's and
// west's gateways logged while it ran.
func (f *fed) failures(ctx context.Context, t *testing.T, l *loadRun, h load.History) {
	t.Helper()
	fails := h.Failures()
	if len(fails) == 0 {
		return
	}
	logs, err := f.nodes["east"].Kubectl(ctx, nil, "-n", "demo", "logs", l.pod, "-c", "strait-proxy", "--since=10m")
	if err != nil {
		t.Logf("sidecar logs: %v", err)
	}
	var gwLogs []string
	for _, c := range []string{"east", "west"} {
		out, err := f.nodes[c].Kubectl(ctx, nil, "-n", "strait-system", "logs", "-l", "app.kubernetes.io/name=strait-gateway",
			"-c", "gateway", "--prefix", "--since=10m", "--tail=-1")
		if err != nil {
			t.Logf("%s gateway logs: %v", c, err)
		}
		for _, line := range strings.Split(string(out), "\n") {
			gwLogs = append(gwLogs, c+" "+line)
		}
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		t.Logf("%d failed requests; the host's load average (1, 5, 15 min): %s", len(fails), strings.Join(strings.Fields(string(b))[:3], " "))
	}
	if now, err := f.podNetOf(ctx, l.pod); err != nil {
		t.Logf("client pod's TCP counters: %v", err)
	} else {
		t.Logf("client pod during the load: sidecar restarts %d -> %d; TCP counters that moved: %s", l.net.restarts, now.restarts, now.diff(l.net))
		if now.restarts > l.net.restarts {
			prev, _ := f.nodes["east"].Kubectl(ctx, nil, "-n", "demo", "logs", l.pod, "-c", "strait-proxy", "--previous", "--tail=40")
			t.Logf("the sidecar restarted; the end of its previous log:\n%s", prev)
		}
	}
	for _, r := range fails {
		var evidence []string
		if i := strings.LastIndex(r.Local, ":"); i >= 0 {
			port := regexp.MustCompile(`[:=]` + regexp.QuoteMeta(r.Local[i+1:]) + `\b`)
			for _, line := range strings.Split(string(logs), "\n") {
				if port.MatchString(line) {
					evidence = append(evidence, "sidecar: "+line)
				}
			}
		}
		for _, line := range gwLogs {
			if at, ok := logTime(line); ok && !at.Before(r.Start.Add(-time.Second)) && !at.After(r.End().Add(time.Second)) &&
				(strings.Contains(line, `"level":"WARN"`) || strings.Contains(line, `"level":"ERROR"`)) {
				evidence = append(evidence, "gateway: "+line)
			}
		}
		t.Errorf("failed request %d started %s (%s after the load began): %s: %s (local %s); evidence:\n  %s",
			r.Seq, r.Start.Format("15:04:05.000"), r.Start.Sub(h[0].Start).Round(time.Millisecond), r.Kind, r.Error, r.Local,
			strings.Join(evidence, "\n  "))
	}
}

var logTimeRE = regexp.MustCompile(`"time":"([^"]+)"`)

// logTime is the time of a JSON log line.
func logTime(line string) (time.Time, bool) {
	m := logTimeRE.FindStringSubmatch(line)
	if m == nil {
		return time.Time{}, false
	}
	at, err := time.Parse(time.RFC3339Nano, m[1])
	return at, err == nil
}
