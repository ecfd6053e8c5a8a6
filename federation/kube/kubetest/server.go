package kubetest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"github.com/strait-mesh/strait/internal/etcdtest"
)

// Options configures a test API server. Zero values mean the documented
// default.
type Options struct {
	// EtcdURL is the etcd the server stores in. Zero means a new embedded
	// etcd for this server.
	EtcdURL string
	// Prefix is the server's etcd prefix; servers sharing an etcd need
	// different ones. Zero means "/registry".
	Prefix string
	// StartTimeout bounds the wait for /readyz. Zero means 90s.
	StartTimeout time.Duration
}

// Server is a running kube-apiserver.
type Server struct {
	// Config is an admin (system:masters) client config of the server.
	Config *rest.Config
	// URL is https://127.0.0.1:<port>.
	URL string
	// Dir holds the server's certificates, keys and log.
	Dir string
}

// adminToken is the bearer token of the test administrator.
const adminToken = "strait-kubetest-admin"

// Start builds (when needed) and runs a kube-apiserver on loopback with a
// self-signed serving certificate and token authentication, and waits
// until it is ready.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	bin := Binary(t, "kube-apiserver")
	if opts.EtcdURL == "" {
		srv, _ := etcdtest.Start(t, 1)
		opts.EtcdURL = srv.Endpoints()[0]
	}
	if opts.Prefix == "" {
		opts.Prefix = "/registry"
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 90 * time.Second
	}
	dir := t.TempDir()
	caPEM, err := writeCredentials(dir)
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	var lastErr error
	for range 3 { // a free port may be taken before the server binds it
		s, err := start(t, bin, dir, caPEM, opts)
		if err == nil {
			return s
		}
		lastErr = err
	}
	t.Fatalf("kubetest: %v", lastErr)
	return nil
}

func start(t testing.TB, bin, dir string, caPEM []byte, opts Options) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "kube-apiserver-"+strconv.Itoa(port)+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	args := []string{
		"--etcd-servers=" + opts.EtcdURL,
		"--etcd-prefix=" + opts.Prefix,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + dir,
		"--tls-cert-file=" + filepath.Join(dir, "serving.crt"),
		"--tls-private-key-file=" + filepath.Join(dir, "serving.key"),
		"--token-auth-file=" + filepath.Join(dir, "tokens.csv"),
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + filepath.Join(dir, "sa.key"),
		"--service-account-signing-key-file=" + filepath.Join(dir, "sa.key"),
		"--service-cluster-ip-range=10.96.0.0/16",
		"--endpoint-reconciler-type=none",
		"--enable-priority-and-fairness=false",
		"--allow-privileged=true",
		"--profiling=false",
		"--v=1",
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start kube-apiserver: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	url := "https://127.0.0.1:" + strconv.Itoa(port)
	cfg := &rest.Config{
		Host: url, BearerToken: adminToken,
		TLSClientConfig: rest.TLSClientConfig{CAData: caPEM},
		QPS:             200, Burst: 400,
	}
	if err := waitReady(cfg, exited, opts.StartTimeout); err != nil {
		stop()
		return nil, fmt.Errorf("kube-apiserver on port %d: %w\n%s", port, err, tail(logPath, 30))
	}
	t.Cleanup(stop)
	return &Server{Config: cfg, URL: url, Dir: dir}, nil
}

// waitReady polls /readyz until it answers 200, the process exits or the
// timeout passes.
func waitReady(cfg *rest.Config, exited <-chan error, timeout time.Duration) error {
	rt, err := rest.TransportFor(cfg)
	if err != nil {
		return err
	}
	client := &http.Client{Transport: rt, Timeout: 5 * time.Second}
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var last error
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return fmt.Errorf("exited before it was ready: %v", err)
		case <-tick.C:
		}
		resp, err := client.Get(cfg.Host + "/readyz")
		if err != nil {
			last = err
			continue
		}
		_ = resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return nil
		}
		last = fmt.Errorf("/readyz: %s", resp.Status)
	}
	return fmt.Errorf("not ready after %v: %v", timeout, last)
}

// writeCredentials writes a self-signed serving certificate for 127.0.0.1,
// a service-account signing key and the token file, and returns the
// certificate in PEM.
func writeCredentials(dir string) ([]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "kubetest"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM, err := ecKeyPEM(key)
	if err != nil {
		return nil, err
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	saPEM, err := ecKeyPEM(saKey)
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{
		"serving.crt": certPEM,
		"serving.key": keyPEM,
		"sa.key":      saPEM,
		"tokens.csv":  []byte(adminToken + ",admin,admin,system:masters\n"),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return nil, err
		}
	}
	return certPEM, nil
}

func ecKeyPEM(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// tail returns the last n lines of a file, for failure messages.
func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// Binary returns the path of a binary built by e2e/kubetools/build.sh,
// building it first when needed. A failed build skips the test, or fails it
// when CI=true.
func Binary(t testing.TB, name string) string {
	t.Helper()
	script := Path(t, "e2e/kubetools/build.sh")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, script, name)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	if err == nil {
		if d := time.Since(start); d > 5*time.Second {
			t.Logf("kubetest: built %s in %v", name, d.Round(time.Second))
		}
		return filepath.Join(strings.TrimSpace(stdout.String()), name)
	}
	msg := fmt.Sprintf("kubetest: %s: %v\n%s", script, err, stderr.String())
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg + "\n(the test fails instead of skipping when CI=true)")
	return ""
}

// Path returns the absolute path of a file of the repository, given
// relative to its root (the directory of the go.mod of
// github.com/strait-mesh/strait).
func Path(t testing.TB, rel string) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(data, []byte("module github.com/strait-mesh/strait\n")) {
			return filepath.Join(dir, filepath.FromSlash(rel))
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("kubetest: not inside the strait repository")
		}
		dir = parent
	}
}
