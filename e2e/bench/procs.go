package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DefaultStopTimeout is how long Procs.Stop waits after SIGTERM before it
// sends SIGKILL.
const DefaultStopTimeout = 5 * time.Second

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat;
// it is 100 on every Linux architecture Go supports.
const clockTicks = 100

// Procs is a group of child processes that are stopped together. Each
// child's stdout and stderr go to <Dir>/<name>.log. The zero value is not
// usable; use NewProcs.
type Procs struct {
	dir string
	// env holds extra environment variables per binary path.
	env map[string][]string

	mu    sync.Mutex
	procs []*Proc
}

// Proc is one child process.
type Proc struct {
	Name string
	Log  string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// NewProcs returns a group whose logs go to dir.
func NewProcs(dir string) *Procs { return &Procs{dir: dir, env: map[string][]string{}} }

// SetEnv adds environment variables (KEY=value) to every later start of bin.
func (ps *Procs) SetEnv(bin string, env []string) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.env[bin] = append(ps.env[bin], env...)
}

// Start starts bin with args. The child is killed if the harness dies
// (Pdeathsig) and runs in its own process group so that Stop reaches
// whatever it forks.
func (ps *Procs) Start(name, bin string, args ...string) (*Proc, error) {
	logPath := filepath.Join(ps.dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("bench: start %s: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	ps.mu.Lock()
	if env := ps.env[bin]; len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	ps.mu.Unlock()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("bench: start %s: %w", name, err)
	}
	p := &Proc{Name: name, Log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		_ = f.Close()
		close(p.done)
	}()
	ps.mu.Lock()
	ps.procs = append(ps.procs, p)
	ps.mu.Unlock()
	return p, nil
}

// Stop stops every process of the group, newest first: SIGTERM to its
// process group, then SIGKILL after DefaultStopTimeout. It is safe to call
// more than once.
func (ps *Procs) Stop() {
	ps.mu.Lock()
	procs := ps.procs
	ps.procs = nil
	ps.mu.Unlock()
	var wg sync.WaitGroup
	for i := len(procs) - 1; i >= 0; i-- {
		wg.Add(1)
		go func(p *Proc) {
			defer wg.Done()
			p.stop()
		}(procs[i])
	}
	wg.Wait()
}

func (p *Proc) stop() {
	pid := p.cmd.Process.Pid
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(DefaultStopTimeout):
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	<-p.done
}

// Pid is the child's process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Exited reports whether the child has ended, and how.
func (p *Proc) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// WaitLog waits until the child's log contains substr, returning the line
// that holds it. It fails when the child exits or timeout passes first.
func (p *Proc) WaitLog(ctx context.Context, substr string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		data, _ := os.ReadFile(p.Log)
		if i := bytes.Index(data, []byte(substr)); i >= 0 {
			start := bytes.LastIndexByte(data[:i], '\n') + 1
			end := bytes.IndexByte(data[i:], '\n')
			if end < 0 {
				end = len(data) - i
			}
			return string(data[start : i+end]), nil
		}
		if done, err := p.Exited(); done {
			return "", fmt.Errorf("bench: %s exited (%v) before logging %q; log %s:\n%s", p.Name, err, substr, p.Log, tail(data, 2000))
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("bench: %s did not log %q within %s; log %s:\n%s", p.Name, substr, timeout, p.Log, tail(data, 2000))
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// Usage is what /proc says about a process at one instant.
type Usage struct {
	// CPU is user plus system time consumed so far.
	CPU time.Duration
	// RSS is the resident set size, HWM its peak and Anon its anonymous
	// part (heap and stacks; the rest is mapped files such as the binary).
	RSS, HWM, Anon int64
}

// Usage reads /proc/<pid>/stat and /proc/<pid>/status.
func (p *Proc) Usage() (Usage, error) { return readUsage(p.Pid()) }

func readUsage(pid int) (Usage, error) {
	var u Usage
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return u, fmt.Errorf("bench: usage of %d: %w", pid, err)
	}
	// The command name (field 2) may hold spaces: fields start after ')'.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return u, fmt.Errorf("bench: usage of %d: malformed stat", pid)
	}
	f := strings.Fields(string(stat[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return u, fmt.Errorf("bench: usage of %d: short stat", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return u, fmt.Errorf("bench: usage of %d: %w", pid, err)
	}
	u.CPU = time.Duration(ut+st) * time.Second / clockTicks
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return u, fmt.Errorf("bench: usage of %d: %w", pid, err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		var dst *int64
		switch k {
		case "VmRSS":
			dst = &u.RSS
		case "VmHWM":
			dst = &u.HWM
		case "RssAnon":
			dst = &u.Anon
		default:
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err == nil {
			*dst = kb << 10
		}
	}
	return u, nil
}
