package spire

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/strait-mesh/strait/e2e/wait"
)

// EnvBinDir names a directory holding spire-server and spire-agent.
const EnvBinDir = "STRAIT_SPIRE_BIN"

// startTimeout bounds the start of a server or an agent.
const startTimeout = 30 * time.Second

// Bin is where the SPIRE binaries are.
type Bin struct {
	Server, Agent string
}

// Binaries finds spire-server and spire-agent in $STRAIT_SPIRE_BIN or
// e2e/tools/bin. When they are missing the test is skipped, or fails when
// the CI environment variable is "true".
func Binaries(t testing.TB) Bin {
	t.Helper()
	dir := os.Getenv(EnvBinDir)
	if dir == "" {
		_, file, _, _ := runtime.Caller(0)
		dir = filepath.Join(filepath.Dir(file), "..", "tools", "bin")
	}
	b := Bin{Server: filepath.Join(dir, "spire-server"), Agent: filepath.Join(dir, "spire-agent")}
	for _, p := range []string{b.Server, b.Agent} {
		if fi, err := os.Stat(p); err != nil || fi.Mode()&0o111 == 0 {
			msg := fmt.Sprintf("SPIRE binary %s missing: build it with e2e/tools/build-spire.sh (about 6 minutes the first time) or set %s", p, EnvBinDir)
			if os.Getenv("CI") == "true" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
	return b
}

// Server is a running SPIRE server.
type Server struct {
	TrustDomain string
	dir         string
	port        int
	bin         Bin
	// Conn is a gRPC connection to the server's API socket, where SPIRE
	// treats the caller as a local administrator.
	Conn *grpc.ClientConn
}

// SocketPath is the server's API socket.
func (s *Server) SocketPath() string { return filepath.Join(s.dir, "api.sock") }

// StartServer starts a SPIRE server for trust domain td (join-token node
// attestation, in-memory keys, SQLite) and waits until its API answers. It
// is stopped when the test ends.
func StartServer(t testing.TB, bin Bin, td string) *Server {
	t.Helper()
	s := &Server{TrustDomain: td, dir: shortTempDir(t, "srv-"+td), port: freePort(t), bin: bin}
	conf := fmt.Sprintf(`server {
  bind_address = "127.0.0.1"
  bind_port = "%d"
  socket_path = %q
  trust_domain = %q
  data_dir = %q
  log_level = "INFO"
  default_x509_svid_ttl = "1h"
  experimental {
    cache_reload_interval = "1s"
  }
}
plugins {
  DataStore "sql" {
    plugin_data {
      database_type = "sqlite3"
      connection_string = %q
    }
  }
  NodeAttestor "join_token" {
    plugin_data {}
  }
  KeyManager "memory" {
    plugin_data {}
  }
}
`, s.port, s.SocketPath(), td, filepath.Join(s.dir, "data"), filepath.Join(s.dir, "data", "datastore.sqlite3"))
	path := writeFile(t, s.dir, "server.conf", conf)
	start(t, "spire-server "+td, s.dir, bin.Server, "run", "-config", path)

	conn, err := grpc.NewClient("unix://"+s.SocketPath(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("spire-server %s: %v", td, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	s.Conn = conn
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	// WaitForReady holds the call until the socket accepts connections.
	if _, err := bundlev1.NewBundleClient(conn).GetBundle(ctx, &bundlev1.GetBundleRequest{}, grpc.WaitForReady(true)); err != nil {
		t.Fatalf("spire-server %s did not start: %v", td, err)
	}
	return s
}

// Agent is a running SPIRE agent.
type Agent struct {
	// ID is the agent's SPIFFE ID, the parent of its workloads' entries.
	ID  *types.SPIFFEID
	dir string
}

// SocketPath is the agent's Workload API socket.
func (a *Agent) SocketPath() string { return filepath.Join(a.dir, "agent.sock") }

// SocketAddr is the Workload API address in the form go-spiffe takes.
func (a *Agent) SocketAddr() string { return "unix://" + a.SocketPath() }

// ShareSocket lets processes of every uid reach the agent's Workload API
// socket: the agent's directory becomes traversable (0711: not listable, its
// files keep their own modes) and the socket writable by all, as SPIRE
// agents serve it in production. The agent still attests each caller by its
// uid. It waits until the agent has created the socket.
func (a *Agent) ShareSocket(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	err := wait.Until(ctx, 20*time.Millisecond, func(context.Context) (bool, error) {
		fi, err := os.Stat(a.SocketPath())
		return err == nil && fi.Mode()&os.ModeSocket != 0, nil
	})
	if err != nil {
		t.Fatalf("agent socket %s: %v", a.SocketPath(), err)
	}
	if err := os.Chmod(a.dir, 0o711); err != nil {
		t.Fatalf("share agent socket: %v", err)
	}
	if err := os.Chmod(a.SocketPath(), 0o777); err != nil {
		t.Fatalf("share agent socket: %v", err)
	}
}

// StartAgent creates a join token and starts an agent that attests with
// it. It is stopped when the test ends. The agent syncs with the server
// every second.
func (s *Server) StartAgent(t testing.TB) *Agent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	tok, err := agentv1.NewAgentClient(s.Conn).CreateJoinToken(ctx, &agentv1.CreateJoinTokenRequest{Ttl: 600})
	if err != nil {
		t.Fatalf("join token for %s: %v", s.TrustDomain, err)
	}
	a := &Agent{
		ID:  &types.SPIFFEID{TrustDomain: s.TrustDomain, Path: "/spire/agent/join_token/" + tok.GetValue()},
		dir: shortTempDir(t, "agent-"+s.TrustDomain),
	}
	conf := fmt.Sprintf(`agent {
  data_dir = %q
  log_level = "INFO"
  server_address = "127.0.0.1"
  server_port = "%d"
  socket_path = %q
  trust_domain = %q
  insecure_bootstrap = true
  join_token = %q
  experimental {
    sync_interval = "1s"
  }
}
plugins {
  NodeAttestor "join_token" {
    plugin_data {}
  }
  KeyManager "memory" {
    plugin_data {}
  }
  WorkloadAttestor "unix" {
    plugin_data {}
  }
}
`, filepath.Join(a.dir, "data"), s.port, a.SocketPath(), s.TrustDomain, tok.GetValue())
	path := writeFile(t, a.dir, "agent.conf", conf)
	start(t, "spire-agent "+s.TrustDomain, a.dir, s.bin.Agent, "run", "-config", path)
	return a
}

// CreateWorkloadEntry registers spiffeID for workloads of this process' uid
// under the agent, federating with the given trust domains, and returns the
// entry ID.
func (s *Server) CreateWorkloadEntry(t testing.TB, a *Agent, spiffeID string, federatesWith ...string) string {
	t.Helper()
	return s.CreateUIDEntry(t, a, os.Getuid(), spiffeID, federatesWith...)
}

// CreateUIDEntry registers spiffeID for the workloads that run as uid
// (unix workload attestor selector uid:<uid>) under the agent, federating
// with the given trust domains, and returns the entry ID. Processes of other
// uids reach the agent's socket only after ShareSocket.
func (s *Server) CreateUIDEntry(t testing.TB, a *Agent, uid int, spiffeID string, federatesWith ...string) string {
	t.Helper()
	id, err := splitID(spiffeID)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	resp, err := entryv1.NewEntryClient(s.Conn).BatchCreateEntry(ctx, &entryv1.BatchCreateEntryRequest{
		Entries: []*types.Entry{{
			ParentId:      a.ID,
			SpiffeId:      id,
			Selectors:     []*types.Selector{{Type: "unix", Value: "uid:" + strconv.Itoa(uid)}},
			FederatesWith: federatesWith,
		}},
	})
	if err != nil {
		t.Fatalf("create entry %s: %v", spiffeID, err)
	}
	r := resp.GetResults()[0]
	if codes.Code(r.GetStatus().GetCode()) != codes.OK {
		t.Fatalf("create entry %s: %s", spiffeID, r.GetStatus().GetMessage())
	}
	return r.GetEntry().GetId()
}

// FederateEntry makes an entry federate with trust domains, whose bundles
// must be in the server already. It returns the server's refusal, if any.
func (s *Server) FederateEntry(ctx context.Context, entryID string, federatesWith ...string) error {
	resp, err := entryv1.NewEntryClient(s.Conn).BatchUpdateEntry(ctx, &entryv1.BatchUpdateEntryRequest{
		Entries:   []*types.Entry{{Id: entryID, FederatesWith: federatesWith}},
		InputMask: &types.EntryMask{FederatesWith: true},
	})
	if err != nil {
		return fmt.Errorf("update entry %s: %w", entryID, err)
	}
	if st := resp.GetResults()[0].GetStatus(); codes.Code(st.GetCode()) != codes.OK {
		return fmt.Errorf("update entry %s: %s: %s", entryID, codes.Code(st.GetCode()), st.GetMessage())
	}
	return nil
}

func splitID(s string) (*types.SPIFFEID, error) {
	const scheme = "spiffe://"
	if len(s) <= len(scheme) || s[:len(scheme)] != scheme {
		return nil, fmt.Errorf("not a SPIFFE ID: %q", s)
	}
	rest := s[len(scheme):]
	i := bytes.IndexByte([]byte(rest), '/')
	if i < 0 {
		return nil, fmt.Errorf("SPIFFE ID %q has no path", s)
	}
	return &types.SPIFFEID{TrustDomain: rest[:i], Path: rest[i:]}, nil
}

// start runs a process whose output goes to a log file, printed when the
// test fails, and stops it (SIGTERM, then SIGKILL) when the test ends.
func start(t testing.TB, name, dir, path string, args ...string) {
	t.Helper()
	logPath := filepath.Join(dir, "log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		_ = logFile.Close()
		if t.Failed() {
			if out, err := os.ReadFile(logPath); err == nil {
				t.Logf("---- %s log (%s) ----\n%s", name, logPath, tail(out, 40))
			}
		}
	})
}

func tail(b []byte, lines int) []byte {
	n := 0
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == '\n' {
			n++
			if n > lines {
				return b[i+1:]
			}
		}
	}
	return b
}

// shortTempDir makes a directory under /tmp with a short path: unix socket
// paths are limited to 107 bytes, and t.TempDir paths can be long.
func shortTempDir(t testing.TB, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "strait-"+prefix+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

func writeFile(t testing.TB, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// freePort returns a TCP port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
