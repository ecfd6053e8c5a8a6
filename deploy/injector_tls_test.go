package deploy_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/strait-mesh/strait/federation/kube/kubetest"
)

// TestInjectorTLSScript runs deploy/injector-tls.sh, the step the README
// gives users for the injector's certificate, with the pinned kubectl
// against a real kube-apiserver holding base/: the Secret it stores must
// verify, for the injector Service's name, against the caBundle it writes
// into both webhooks, and running it again (a renewal) must work too.
func TestInjectorTLSScript(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("openssl is not installed")
		}
		t.Skip("openssl is not installed (the test fails instead when CI=true)")
	}
	srv := kubetest.Start(t, kubetest.Options{})
	kubectl := kubetest.Binary(t, "kubectl")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	objs, err := kubetest.ReadManifests(kubetest.Path(t, "deploy/base"))
	if err != nil {
		t.Fatal(err)
	}
	if err := kubetest.Apply(ctx, srv.Config, objs, kubetest.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: mustFirstCert(t, srv.Config.CAData)})
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), ca, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: test, cluster: {server: %q, certificate-authority: %q}}]
users: [{name: admin, user: {token: %q}}]
contexts: [{name: test, context: {cluster: test, user: admin}}]
current-context: test
`, srv.URL, filepath.Join(dir, "ca.crt"), srv.Config.BearerToken)
	if err := os.WriteFile(kubeconfig, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	kc := kubernetes.NewForConfigOrDie(srv.Config)
	var serials []string
	for run := range 2 {
		cmd := exec.CommandContext(ctx, kubetest.Path(t, "deploy/injector-tls.sh"), "--kubeconfig", kubeconfig)
		cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(kubectl)+":"+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("run %d: %v\n%s", run, err, out)
		}
		sec, err := kc.CoreV1().Secrets("strait-system").Get(ctx, "strait-injector-tls", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		wh, err := kc.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "strait-injector", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(wh.Webhooks) != 2 || string(wh.Webhooks[0].ClientConfig.CABundle) != string(wh.Webhooks[1].ClientConfig.CABundle) {
			t.Fatalf("webhooks' caBundles differ or are missing: %d webhooks", len(wh.Webhooks))
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(wh.Webhooks[0].ClientConfig.CABundle) {
			t.Fatalf("run %d: caBundle holds no certificate", run)
		}
		leaf, err := x509.ParseCertificate(mustFirstCert(t, sec.Data["tls.crt"]))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "strait-injector.strait-system.svc", Roots: roots,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("run %d: the Secret's certificate does not verify against the caBundle: %v", run, err)
		}
		if len(sec.Data["tls.key"]) == 0 || !strings.Contains(string(out), "caBundle") {
			t.Errorf("run %d: key %d bytes, output %s", run, len(sec.Data["tls.key"]), out)
		}
		serials = append(serials, leaf.SerialNumber.String())
	}
	if serials[0] == serials[1] {
		t.Errorf("the second run did not renew the certificate (serial %s)", serials[0])
	}
}

func mustFirstCert(t *testing.T, pemData []byte) []byte {
	t.Helper()
	b, _ := pem.Decode(pemData)
	if b == nil || b.Type != "CERTIFICATE" {
		t.Fatalf("no PEM certificate in %q", pemData)
	}
	return b.Bytes
}
