package inject

import (
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
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"

	"github.com/strait-mesh/strait/federation/kube/kubetest"
)

// TestInjectionByAPIServer registers the MutatingWebhookConfiguration of
// deploy/base/injector.yaml (its selectors, failure policies and paths as
// shipped; only the client config points at the webhook this test serves
// on loopback, with the caBundle of a CA the test makes) with a real
// kube-apiserver, creates pods and reads back what the API server stored:
// the sidecar in a labelled namespace, none for a pod that opts out, one
// only for a pod annotated elsewhere, none in strait-system, and a refusal
// naming the bad annotation.
func TestInjectionByAPIServer(t *testing.T) {
	srv := kubetest.Start(t, kubetest.Options{})
	dir := t.TempDir()
	caPEM := writeServingCert(t, dir)
	in, _ := newTestInjector(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ws, err := NewServer(ServerConfig{CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key"), Injector: in, Listener: ln})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	done := make(chan error, 1)
	runCtx, stop := context.WithCancel(ctx)
	go func() { done <- ws.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-done; err != context.Canceled {
			t.Errorf("webhook server: %v", err)
		}
	}()

	kc := kubernetes.NewForConfigOrDie(srv.Config)
	wh := webhookFromDeploy(t, "https://"+ln.Addr().String(), caPEM)
	if _, err := kc.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, wh, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for ns, labels := range map[string]map[string]string{
		"demo": {"strait.io/inject": "enabled"}, "other": nil, "strait-system": {"strait.io/inject": "enabled"},
	} {
		if _, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: labels}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		// No controller-manager: the ServiceAccount admission wants the
		// default ServiceAccount to exist.
		if _, err := kc.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	create := func(ns, name string, annotations map[string]string, mutate ...func(*corev1.Pod)) (*corev1.Pod, error) {
		p := pod(annotations, mutate...)
		p.GenerateName, p.Name, p.Namespace = "", name, ns
		return kc.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
	}
	// The API server loads webhook configurations from a watch: wait
	// until it calls this one.
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; ; i++ {
		p, err := create("demo", fmt.Sprintf("probe-%d", i), nil)
		if err != nil {
			t.Fatal(err)
		}
		_ = kc.CoreV1().Pods("demo").Delete(ctx, p.Name, metav1.DeleteOptions{})
		if names(p.Spec.Containers) == "app,strait-proxy" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the API server did not call the webhook within 30s: containers %s", names(p.Spec.Containers))
		}
		time.Sleep(200 * time.Millisecond) // polling the API server's state, bounded by the deadline
	}
	injectedBefore := testutil.ToFloat64(in.metrics.reviews.WithLabelValues(string(ResultInjected)))

	tests := []struct {
		ns, name    string
		annotations map[string]string
		handBuilt   bool
		inits, ctrs string
		refused     string // part of the error message
	}{
		{ns: "demo", name: "plain", inits: "strait-init", ctrs: "app,strait-proxy"},
		{ns: "demo", name: "no-capture", annotations: map[string]string{"strait.io/capture": "false", "strait.io/proxy-config": "hello-proxy"}, inits: "strait-init", ctrs: "app,strait-proxy"},
		{ns: "demo", name: "opted-out", annotations: map[string]string{"strait.io/inject": "false"}, ctrs: "app"},
		{ns: "demo", name: "hand-built", handBuilt: true, ctrs: "app,strait-proxy"},
		{ns: "other", name: "annotated", annotations: map[string]string{"strait.io/inject": "true"}, inits: "strait-init", ctrs: "app,strait-proxy"},
		{ns: "other", name: "plain", ctrs: "app"},
		{ns: "strait-system", name: "excluded", annotations: map[string]string{"strait.io/inject": "true"}, ctrs: "app"},
		{ns: "demo", name: "bad", annotations: map[string]string{"strait.io/inject": "yes"}, refused: `strait.io/inject is "yes", want "true" or "false"`},
		{ns: "other", name: "bad", annotations: map[string]string{"strait.io/inject": "on"}, refused: `strait.io/inject is "on"`},
	}
	for _, tt := range tests {
		t.Run(tt.ns+"/"+tt.name, func(t *testing.T) {
			var mutate []func(*corev1.Pod)
			if tt.handBuilt {
				mutate = append(mutate, func(p *corev1.Pod) {
					p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: ContainerProxy, Image: "strait:dev"})
				})
			}
			created, err := create(tt.ns, tt.name, tt.annotations, mutate...)
			if tt.refused != "" {
				if err == nil || !strings.Contains(err.Error(), tt.refused) {
					t.Fatalf("created: %v; want a refusal saying %s", err, tt.refused)
				}
				t.Logf("refused: %v", err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			// Read back what the API server stored.
			got, err := kc.CoreV1().Pods(tt.ns).Get(ctx, created.Name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if s := names(got.Spec.InitContainers); s != tt.inits {
				t.Errorf("init containers %q, want %q", s, tt.inits)
			}
			if s := names(got.Spec.Containers); s != tt.ctrs {
				t.Errorf("containers %q, want %q", s, tt.ctrs)
			}
			injected := tt.ctrs == "app,strait-proxy" && !tt.handBuilt
			if (got.Annotations[AnnotationInjected] == "true") != injected {
				t.Errorf("annotations %v, injected %v", got.Annotations, injected)
			}
			if injected {
				checkSidecar(t, got, cmpOr(tt.annotations["strait.io/proxy-config"], DefaultProxyConfigMap))
				if s := volumeNames(got.Spec.Volumes); !strings.HasSuffix(s, "strait-proxy-config,strait-state,strait-ca") {
					t.Errorf("volumes %s", s)
				}
			}
		})
	}
	if got := testutil.ToFloat64(in.metrics.reviews.WithLabelValues(string(ResultInjected))) - injectedBefore; got != 3 {
		t.Errorf("strait_inject_reviews_total{result=injected} grew by %v, want 3", got)
	}
	for result, want := range map[Result]float64{ResultOptedOut: 1, ResultAlreadyInjected: 1, ResultNotRequested: 1, ResultRefused: 2} {
		if got := testutil.ToFloat64(in.metrics.reviews.WithLabelValues(string(result))); got != want {
			t.Errorf("strait_inject_reviews_total{result=%s} = %v, want %v", result, got, want)
		}
	}
	if got := testutil.ToFloat64(in.metrics.refusals.WithLabelValues(reasonBadAnnotation)); got != 2 {
		t.Errorf("strait_inject_refusals_total{reason=bad_annotation} = %v, want 2", got)
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// webhookFromDeploy reads the MutatingWebhookConfiguration of
// deploy/base/injector.yaml and points each webhook's client config at url
// (plus the webhook's path) with caBundle.
func webhookFromDeploy(t *testing.T, url string, caBundle []byte) *admissionregistrationv1.MutatingWebhookConfiguration {
	t.Helper()
	objs, err := kubetest.ReadManifests(kubetest.Path(t, "deploy/base/injector.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if o.Obj.GetKind() != "MutatingWebhookConfiguration" {
			continue
		}
		var wh admissionregistrationv1.MutatingWebhookConfiguration
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Obj.Object, &wh); err != nil {
			t.Fatal(err)
		}
		if len(wh.Webhooks) != 2 {
			t.Fatalf("%d webhooks in deploy/, want 2", len(wh.Webhooks))
		}
		for i := range wh.Webhooks {
			cc := &wh.Webhooks[i].ClientConfig
			if cc.Service == nil || cc.Service.Path == nil || cc.Service.Name != "strait-injector" {
				t.Fatalf("webhook %s: client config %+v, want the strait-injector Service", wh.Webhooks[i].Name, cc)
			}
			u := url + *cc.Service.Path
			cc.Service, cc.URL, cc.CABundle = nil, &u, caBundle
		}
		return &wh
	}
	t.Fatal("no MutatingWebhookConfiguration in deploy/base/injector.yaml")
	return nil
}

// writeServingCert writes tls.crt and tls.key for 127.0.0.1, signed by a
// new CA, into dir and returns the CA's certificate in PEM.
func writeServingCert(t *testing.T, dir string) []byte {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "strait-injector test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "strait-injector.strait-system.svc"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"strait-injector.strait-system.svc"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"tls.crt": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		"tls.key": pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
}
