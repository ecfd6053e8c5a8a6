package netns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/strait-mesh/strait/e2e/wait"
)

// ProcConfig describes a long-running process.
type ProcConfig struct {
	// Path is the program (looked up in PATH when it has no slash).
	Path string
	// Args are its arguments.
	Args []string
	// Env is added to the test process's environment.
	Env []string
	// Dir is the working directory. Default: the test process's.
	Dir string
	// Label names the log file. Default: the program's base name.
	Label string
}

// Proc is a process running inside a namespace. Its standard output and error
// go to one log file in the topology's LogDir.
type Proc struct {
	host    *Host
	cfg     ProcConfig
	cmd     *exec.Cmd
	logPath string
	logFile *os.File

	done chan struct{} // closed when the process has exited
	mu   sync.Mutex
	err  error // exit error, once done
}

// Start starts path with args inside the namespace; see StartProc.
func (h *Host) Start(path string, args ...string) (*Proc, error) {
	return h.StartProc(ProcConfig{Path: path, Args: args})
}

// StartProc starts a process inside the namespace, in its own process group.
// The topology kills it on Close if it still runs.
func (h *Host) StartProc(cfg ProcConfig) (*Proc, error) {
	t := h.topo
	if cfg.Label == "" {
		cfg.Label = filepath.Base(cfg.Path)
	}
	logPath, err := t.newLogPath(h, cfg.Label)
	if err != nil {
		return nil, err
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("netns: log file: %w", err)
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", h.ns, cfg.Path}, cfg.Args...)...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.Dir = cfg.Dir
	cmd.Env = append(os.Environ(), cfg.Env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p := &Proc{host: h, cfg: cfg, cmd: cmd, logPath: logPath, logFile: logFile, done: make(chan struct{})}
	if err := t.addProc(p); err != nil {
		logFile.Close()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		t.removeProc(p)
		return nil, fmt.Errorf("netns: %s: start %s: %w", h, cfg.Path, err)
	}
	t.log.Debug("process started", "host", h.String(), "path", cfg.Path, "pid", cmd.Process.Pid, "log", logPath)
	go func() {
		err := cmd.Wait()
		logFile.Close()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// Host returns the host the process runs on.
func (p *Proc) Host() *Host { return p.host }

// Pid returns the process ID.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// LogPath returns the path of the process's log file.
func (p *Proc) LogPath() string { return p.logPath }

// Log returns what the process wrote so far.
func (p *Proc) Log() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited, and its exit error.
func (p *Proc) Exited() (bool, error) {
	select {
	case <-p.done:
		p.mu.Lock()
		defer p.mu.Unlock()
		return true, p.err
	default:
		return false, nil
	}
}

// Signal sends sig to the process's group.
func (p *Proc) Signal(sig syscall.Signal) error {
	if exited, _ := p.Exited(); exited {
		return nil
	}
	if err := syscall.Kill(-p.Pid(), sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("netns: signal %s to %d: %w", sig, p.Pid(), err)
	}
	return nil
}

// Kill sends SIGKILL (kill -9) to the process group and waits for the exit.
func (p *Proc) Kill() error {
	if err := p.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	<-p.done
	return nil
}

// Stop sends SIGTERM and waits up to grace for the exit, then kills. It
// returns nil when the process exited within grace with status 0 or by the
// SIGTERM itself (as programs that re-raise the signal after cleaning up do),
// the exit error when it exited otherwise, and an error when it was killed.
func (p *Proc) Stop(grace time.Duration) error {
	if err := p.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-p.done:
		_, err := p.Exited()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGTERM {
				return nil
			}
		}
		return err
	case <-timer.C:
	}
	if err := p.Kill(); err != nil {
		return err
	}
	return fmt.Errorf("netns: %s (pid %d) did not stop within %s and was killed", p.cfg.Label, p.Pid(), grace)
}

// Wait waits for the process to exit or ctx to end.
func (p *Proc) Wait(ctx context.Context) error {
	select {
	case <-p.done:
		_, err := p.Exited()
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// WaitLog polls the log until it contains substr, the process exits, or ctx
// ends.
func (p *Proc) WaitLog(ctx context.Context, substr string) error {
	err := wait.Until(ctx, 20*time.Millisecond, func(context.Context) (bool, error) {
		if b, _ := os.ReadFile(p.logPath); bytes.Contains(b, []byte(substr)) {
			return true, nil
		}
		if exited, err := p.Exited(); exited {
			return false, fmt.Errorf("netns: %s exited (%v) before logging %q; log:\n%s", p.cfg.Label, err, substr, tail(p.Log(), 2000))
		}
		return false, nil
	})
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("netns: %s did not log %q: %w; log:\n%s", p.cfg.Label, substr, err, tail(p.Log(), 2000))
	}
	return err
}

// Restart starts the same program again on the same host, once this process
// has exited.
func (p *Proc) Restart() (*Proc, error) {
	if exited, _ := p.Exited(); !exited {
		return nil, ErrNotExited
	}
	return p.host.StartProc(p.cfg)
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[len(s)-n:]
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return "…" + s
}
