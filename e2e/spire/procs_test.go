package spire_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strait-mesh/strait/e2e/wait"
)

// EnvStraitBin names a prebuilt strait binary to run instead of building
// ./cmd/strait.
const EnvStraitBin = "STRAIT_E2E_STRAIT_BIN"

// requireRoot skips the test unless it runs as root (it starts processes
// under other uids), or fails it when CI=true.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	msg := "this test runs Strait processes under their own uids (one SPIRE registration entry per uid) and needs root"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// sharedDir makes a temporary directory that processes of every uid can
// read, for the strait binary and the config files.
func sharedDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "strait-datapath-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// buildStrait builds ./cmd/strait into dir (mode 0755), or copies the binary
// named by $STRAIT_E2E_STRAIT_BIN there.
func buildStrait(t *testing.T, ctx context.Context, dir string) string {
	t.Helper()
	out := filepath.Join(dir, "strait")
	start := time.Now()
	if src := os.Getenv(EnvStraitBin); src != "" {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatalf("%s: %v", EnvStraitBin, err)
		}
		if err := os.WriteFile(out, b, 0o755); err != nil {
			t.Fatal(err)
		}
		return out
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", out, "github.com/strait-mesh/strait/cmd/strait")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/strait: %v\n%s", err, b)
	}
	if err := os.Chmod(out, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("built strait in %s", time.Since(start).Round(time.Millisecond))
	return out
}

// writeJSON writes v as JSON (which the YAML config readers accept), mode
// 0644, and returns its path.
func writeJSON(t *testing.T, dir, name string, v any) string {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// proc is a process whose stdout and stderr go to a log file.
type proc struct {
	name    string
	logPath string
	exited  chan struct{}
	cmd     *exec.Cmd
}

// startProc runs bin with args as uid (0: this process' credentials), its
// output in dir/<name>.log. It is stopped (SIGTERM, then SIGKILL after 10 s)
// when the test ends; on failure the tail of its log is printed.
func startProc(t *testing.T, dir, name string, uid uint32, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, logPath: filepath.Join(dir, name+".log"), exited: make(chan struct{})}
	logFile, err := os.Create(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + dir}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if uid != 0 {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uid, Gid: uid, Groups: []uint32{}}
	}
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	p.cmd = cmd
	go func() { _ = cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-p.exited
		}
		_ = logFile.Close()
		if t.Failed() {
			if out, err := os.ReadFile(p.logPath); err == nil {
				t.Logf("---- %s log ----\n%s", name, lastLines(out, 30))
			}
		}
	})
	return p
}

func lastLines(b []byte, n int) []byte {
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == '\n' {
			if n--; n < 0 {
				return b[i+1:]
			}
		}
	}
	return b
}

// waitLogJSON waits until the process logs a JSON line whose msg is msg and
// returns that line's fields. It fails when the process exits first.
func (p *proc) waitLogJSON(t *testing.T, ctx context.Context, msg string) map[string]any {
	t.Helper()
	var found map[string]any
	err := wait.Until(ctx, 50*time.Millisecond, func(context.Context) (bool, error) {
		if found = p.findJSON(msg); found != nil {
			return true, nil
		}
		select {
		case <-p.exited:
			return false, fmt.Errorf("%s exited (%v) before logging %q", p.name, p.cmd.ProcessState, msg)
		default:
			return false, nil
		}
	})
	if err != nil {
		t.Fatalf("waiting for %s to log %q: %v", p.name, msg, err)
	}
	return found
}

// findJSON returns the fields of the first JSON log line whose msg is msg.
func (p *proc) findJSON(msg string) map[string]any {
	return p.findJSONWhere(func(m map[string]any) bool { return m["msg"] == msg })
}

// findJSONWhere returns the fields of the first JSON log line that match.
func (p *proc) findJSONWhere(match func(map[string]any) bool) map[string]any {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return nil
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.HasPrefix(line, []byte("{")) {
			continue
		}
		var m map[string]any
		if json.Unmarshal(line, &m) == nil && match(m) {
			return m
		}
	}
	return nil
}

// logContains reports whether the process' log holds s.
func (p *proc) logContains(s string) bool {
	b, err := os.ReadFile(p.logPath)
	return err == nil && strings.Contains(string(b), s)
}

// freeAddr returns a loopback TCP address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
