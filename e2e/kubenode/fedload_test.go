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
// with its evidence, from the pod logs kept while the federation ran (see
// podLogKeeper: they outlive deleted pods and rotated files): the lines of
// the client's sidecar that name its connection's local port; the lines of
// east's gateways that name the sidecar's connection to them (its
// local_addr) and of the other clusters' gateways that name the same QUIC
// stream; and every gateway's lines above DEBUG while it ran.
func (f *fed) failures(ctx context.Context, t *testing.T, l *loadRun, h load.History) {
	t.Helper()
	fails := h.Failures()
	if len(fails) == 0 {
		return
	}
	// The sidecar logs a connection when it closes it, which can be a
	// moment after the load gave up on it: wait (a little) for the line of
	// every failure that has a local address.
	var sidecar []string
	wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	_ = wait.Until(wctx, 100*time.Millisecond, func(context.Context) (bool, error) {
		sidecar = f.logs.lines("east", "demo", l.pod, "strait-proxy")
		for _, r := range fails {
			if i := strings.LastIndex(r.Local, ":"); i >= 0 && !slices.ContainsFunc(sidecar, func(line string) bool {
				return strings.Contains(line, `:`+r.Local[i+1:]+`"`)
			}) {
				return false, nil
			}
		}
		return true, nil
	})
	gwLogs := map[string][]string{}
	for _, c := range fedClusters {
		gwLogs[c] = f.logs.lines(c, "strait-system", "strait-gateway", "gateway")
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		t.Logf("%d failed requests; the host's load average (1, 5, 15 min): %s", len(fails), strings.Join(strings.Fields(string(b))[:3], " "))
	}
	if now, err := f.podNetOf(ctx, l.pod); err != nil {
		t.Logf("client pod's TCP counters: %v", err)
	} else {
		t.Logf("client pod during the load: sidecar restarts %d -> %d; TCP counters that moved: %s", l.net.restarts, now.restarts, now.diff(l.net))
	}
	t.Logf("kept log lines: sidecar %d, gateways east %d, west %d, central %d", len(sidecar), len(gwLogs["east"]), len(gwLogs["west"]), len(gwLogs["central"]))
	for n, r := range fails {
		if n == maxEvidence {
			t.Errorf("%d more failed requests (evidence is logged for the first %d, the records of the first %d)", len(fails)-n, maxEvidence, 5*maxEvidence)
		}
		if n >= 5*maxEvidence {
			continue
		}
		if n >= maxEvidence {
			t.Logf("failed request %d started %s: %s: %s (local %s)", r.Seq, r.Start.Format("15:04:05.000"), r.Kind, r.Error, r.Local)
			continue
		}
		var evidence []string
		from, to := r.Start.Add(-time.Second), r.End().Add(time.Second)
		var locals []string
		if i := strings.LastIndex(r.Local, ":"); i >= 0 {
			port := regexp.MustCompile(`"remote_addr":"[^"]*:` + regexp.QuoteMeta(r.Local[i+1:]) + `"`)
			for _, line := range sidecar {
				if port.MatchString(line) {
					evidence = append(evidence, "sidecar: "+line)
					if m := localAddrRE.FindStringSubmatch(line); m != nil {
						locals = append(locals, m[1])
					}
				}
			}
		}
		streams := map[string]bool{}
		for _, local := range locals {
			for _, line := range gwLogs["east"] {
				if strings.Contains(line, `"remote_addr":"`+local+`"`) {
					evidence = append(evidence, "east gateway: "+line)
					if m := streamIDRE.FindStringSubmatch(line); m != nil {
						streams[m[0]] = true
					}
				}
			}
		}
		for _, c := range fedClusters {
			for _, line := range gwLogs[c] {
				at, ok := logTime(line)
				if !ok || at.Before(from) || at.After(to) {
					continue
				}
				sameStream := false
				for id := range streams {
					// The field is never last: a comma ends the ID
					// (28 is not 280).
					sameStream = sameStream || (c != "east" && strings.Contains(line, id+","))
				}
				if sameStream || !strings.Contains(line, `"level":"DEBUG"`) {
					evidence = append(evidence, c+" gateway: "+line)
				}
			}
		}
		t.Errorf("failed request %d started %s (%s after the load began): %s: %s (local %s); evidence:\n  %s",
			r.Seq, r.Start.Format("15:04:05.000"), r.Start.Sub(h[0].Start).Round(time.Millisecond), r.Kind, r.Error, r.Local,
			strings.Join(evidence, "\n  "))
	}
}

// maxEvidence is how many failed requests failures logs with evidence.
const maxEvidence = 10

var (
	localAddrRE = regexp.MustCompile(`"local_addr":"([^"]+)"`)
	streamIDRE  = regexp.MustCompile(`"stream_id":[0-9]+\b`)
)

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
