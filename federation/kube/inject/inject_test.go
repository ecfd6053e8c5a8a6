package inject

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
)

func newTestInjector(t *testing.T) (*Injector, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	in, err := New(Config{Image: "strait.test/strait:v1", Logger: slog.New(slog.DiscardHandler), Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	return in, reg
}

func pod(annotations map[string]string, mutate ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{GenerateName: "hello-", Namespace: "demo", Annotations: annotations},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:v1"}}},
	}
	for _, m := range mutate {
		m(p)
	}
	return p
}

func review(t *testing.T, p *corev1.Pod) *admissionv1.AdmissionRequest {
	t.Helper()
	raw, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return &admissionv1.AdmissionRequest{
		UID: types.UID("uid-1"), Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		Namespace: p.Namespace, Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: raw},
	}
}

// applyPatch applies the response's JSON Patch to p, as the API server does.
func applyPatch(t *testing.T, p *corev1.Pod, resp *admissionv1.AdmissionResponse) *corev1.Pod {
	t.Helper()
	if resp.Patch == nil {
		return p
	}
	if resp.PatchType == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch {
		t.Fatalf("patch type %v, want JSONPatch", resp.PatchType)
	}
	patch, err := jsonpatch.DecodePatch(resp.Patch)
	if err != nil {
		t.Fatalf("decode patch %s: %v", resp.Patch, err)
	}
	raw, _ := json.Marshal(p)
	out, err := patch.Apply(raw)
	if err != nil {
		t.Fatalf("apply patch %s: %v", resp.Patch, err)
	}
	var got corev1.Pod
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	return &got
}

func names(cs []corev1.Container) string {
	var s []string
	for _, c := range cs {
		s = append(s, c.Name)
	}
	return strings.Join(s, ",")
}

func volumeNames(vs []corev1.Volume) string {
	var s []string
	for _, v := range vs {
		s = append(s, v.Name)
	}
	return strings.Join(s, ",")
}

func TestReview(t *testing.T) {
	withInit := func(p *corev1.Pod) {
		p.Spec.InitContainers = []corev1.Container{{Name: "migrate", Image: "app:v1"}}
		p.Spec.Volumes = []corev1.Volume{{Name: "data"}}
	}
	tests := []struct {
		name    string
		mode    Mode
		pod     *corev1.Pod
		result  Result
		reason  string // refusal reason
		errIs   error
		inits   string // init containers after the patch
		ctrs    string
		volumes string
		config  string // the proxy's ConfigMap
	}{
		{name: "namespace enabled", mode: ModeNamespace, pod: pod(nil), result: ResultInjected,
			inits: "strait-init", ctrs: "app,strait-proxy", volumes: "strait-proxy-config,strait-state,strait-ca", config: "strait-proxy"},
		{name: "namespace enabled, pod opts in", mode: ModeNamespace, pod: pod(map[string]string{"strait.io/inject": "true"}), result: ResultInjected,
			inits: "strait-init", ctrs: "app,strait-proxy", volumes: "strait-proxy-config,strait-state,strait-ca", config: "strait-proxy"},
		{name: "existing init containers and volumes are kept first", mode: ModeNamespace, pod: pod(map[string]string{"a": "b"}, withInit), result: ResultInjected,
			inits: "migrate,strait-init", ctrs: "app,strait-proxy", volumes: "data,strait-proxy-config,strait-state,strait-ca", config: "strait-proxy"},
		{name: "own config map, no capture", mode: ModeNamespace, pod: pod(map[string]string{"strait.io/proxy-config": "hello-proxy", "strait.io/capture": "false"}), result: ResultInjected,
			inits: "strait-init", ctrs: "app,strait-proxy", volumes: "strait-proxy-config,strait-state,strait-ca", config: "hello-proxy"},
		{name: "capture", mode: ModeNamespace, pod: pod(map[string]string{"strait.io/capture": "true"}), result: ResultInjected,
			inits: "strait-init", ctrs: "app,strait-proxy", volumes: "strait-proxy-config,strait-state,strait-ca", config: "strait-proxy"},
		{name: "pod annotation in another namespace", mode: ModePod, pod: pod(map[string]string{"strait.io/inject": "true"}), result: ResultInjected,
			inits: "strait-init", ctrs: "app,strait-proxy", volumes: "strait-proxy-config,strait-state,strait-ca", config: "strait-proxy"},
		{name: "opted out in an enabled namespace", mode: ModeNamespace, pod: pod(map[string]string{"strait.io/inject": "false"}), result: ResultOptedOut,
			ctrs: "app"},
		{name: "opted out elsewhere", mode: ModePod, pod: pod(map[string]string{"strait.io/inject": "false"}), result: ResultOptedOut, ctrs: "app"},
		{name: "not requested", mode: ModePod, pod: pod(nil), result: ResultNotRequested, ctrs: "app"},
		{name: "already injected", mode: ModeNamespace, pod: pod(nil, func(p *corev1.Pod) {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "strait-proxy", Image: "strait:dev"})
		}), result: ResultAlreadyInjected, ctrs: "app,strait-proxy"},
		{name: "bad inject annotation", mode: ModeNamespace, pod: pod(map[string]string{"strait.io/inject": "yes"}), result: ResultRefused,
			reason: reasonBadAnnotation, errIs: ErrBadAnnotation},
		{name: "bad inject annotation where not enabled", mode: ModePod, pod: pod(map[string]string{"strait.io/inject": "enabled"}), result: ResultRefused,
			reason: reasonBadAnnotation, errIs: ErrBadAnnotation},
		{name: "bad capture annotation", mode: ModeNamespace, pod: pod(map[string]string{"strait.io/capture": "off"}), result: ResultRefused,
			reason: reasonBadAnnotation, errIs: ErrBadAnnotation},
		{name: "bad config map name", mode: ModeNamespace, pod: pod(map[string]string{"strait.io/proxy-config": "Hello_Proxy"}), result: ResultRefused,
			reason: reasonBadAnnotation, errIs: ErrBadAnnotation},
		{name: "volume name taken", mode: ModeNamespace, pod: pod(nil, func(p *corev1.Pod) { p.Spec.Volumes = []corev1.Volume{{Name: "strait-state"}} }),
			result: ResultRefused, reason: reasonNameConflict, errIs: ErrNameConflict},
		{name: "init container name taken", mode: ModeNamespace, pod: pod(nil, func(p *corev1.Pod) { p.Spec.InitContainers = []corev1.Container{{Name: "strait-init"}} }),
			result: ResultRefused, reason: reasonNameConflict, errIs: ErrNameConflict},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, reg := newTestInjector(t)
			resp := in.Review(review(t, tt.pod), tt.mode)
			if resp.UID != "uid-1" {
				t.Errorf("UID %q, want the request's", resp.UID)
			}
			if got := testutil.ToFloat64(in.metrics.reviews.WithLabelValues(string(tt.result))); got != 1 {
				t.Errorf("strait_inject_reviews_total{result=%q} = %v, want 1", tt.result, got)
			}
			if n, err := testutil.GatherAndCount(reg, "strait_inject_reviews_total"); err != nil || n != 6 {
				t.Errorf("strait_inject_reviews_total series %d (%v), want 6", n, err)
			}
			if tt.result == ResultRefused {
				if resp.Allowed || resp.Result == nil || resp.Result.Code != http.StatusBadRequest || resp.Patch != nil {
					t.Fatalf("response %+v, want a refusal with code 400 and no patch", resp)
				}
				if got := testutil.ToFloat64(in.metrics.refusals.WithLabelValues(tt.reason)); got != 1 {
					t.Errorf("strait_inject_refusals_total{reason=%q} = %v, want 1", tt.reason, got)
				}
				_, err := Decide(tt.pod, tt.mode)
				if tt.reason == reasonNameConflict {
					_, err = in.Patch(tt.pod)
				}
				if !errors.Is(err, tt.errIs) {
					t.Errorf("error %v, want %v", err, tt.errIs)
				}
				t.Logf("message: %s", resp.Result.Message)
				return
			}
			if !resp.Allowed {
				t.Fatalf("refused: %+v", resp.Result)
			}
			if (resp.Patch != nil) != (tt.result == ResultInjected) {
				t.Fatalf("patch %s for result %s", resp.Patch, tt.result)
			}
			got := applyPatch(t, tt.pod, resp)
			if s := names(got.Spec.InitContainers); s != tt.inits {
				t.Errorf("init containers %q, want %q", s, tt.inits)
			}
			if s := names(got.Spec.Containers); s != tt.ctrs {
				t.Errorf("containers %q, want %q", s, tt.ctrs)
			}
			if tt.result != ResultInjected {
				return
			}
			if s := volumeNames(got.Spec.Volumes); s != tt.volumes {
				t.Errorf("volumes %q, want %q", s, tt.volumes)
			}
			if got.Annotations[AnnotationInjected] != "true" {
				t.Errorf("annotations %v, want %s", got.Annotations, AnnotationInjected)
			}
			for k, v := range tt.pod.Annotations {
				if got.Annotations[k] != v {
					t.Errorf("annotation %s lost", k)
				}
			}
			checkSidecar(t, got, tt.config)
			// Injecting the result again changes nothing.
			again := in.Review(review(t, got), tt.mode)
			if !again.Allowed || again.Patch != nil {
				t.Errorf("second review of the injected pod: allowed %v, patch %s", again.Allowed, again.Patch)
			}
		})
	}
}

// checkSidecar checks the injected proxy container and volumes of p.
func checkSidecar(t *testing.T, p *corev1.Pod, configMap string) {
	t.Helper()
	var proxy *corev1.Container
	for i := range p.Spec.Containers {
		if p.Spec.Containers[i].Name == ContainerProxy {
			proxy = &p.Spec.Containers[i]
		}
	}
	if proxy == nil {
		t.Fatal("no proxy container")
	}
	// Capture is on unless the pod says "false".
	capture := p.Annotations[AnnotationCapture] != "false"
	wantProxyCmd := "/usr/local/bin/strait-proxy --config /etc/strait/proxy/proxy.yaml"
	if capture {
		wantProxyCmd += " --transparent --no-mark"
	}
	if proxy.Image != "strait.test/strait:v1" || strings.Join(proxy.Command, " ") != wantProxyCmd {
		t.Errorf("proxy image %s command %q, want %q", proxy.Image, proxy.Command, wantProxyCmd)
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range proxy.Env {
		env[e.Name] = e
	}
	if e := env["POD_IP"]; e.ValueFrom == nil || e.ValueFrom.FieldRef.FieldPath != "status.podIP" {
		t.Errorf("POD_IP %+v", e)
	}
	if e := env["ETCD_ENDPOINT"]; e.ValueFrom == nil || e.ValueFrom.ConfigMapKeyRef.Name != FederationConfigMap {
		t.Errorf("ETCD_ENDPOINT %+v", e)
	}
	sc := proxy.SecurityContext
	if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || *sc.RunAsUser != 65532 || *sc.RunAsGroup != DefaultProxyGroup ||
		*sc.AllowPrivilegeEscalation || !*sc.ReadOnlyRootFilesystem || len(sc.Capabilities.Add) != 0 || fmt.Sprint(sc.Capabilities.Drop) != "[ALL]" {
		t.Errorf("proxy security context %+v", sc)
	}
	for _, v := range p.Spec.Volumes {
		if v.Name == VolumeConfig && v.ConfigMap.Name != configMap {
			t.Errorf("config map %s, want %s", v.ConfigMap.Name, configMap)
		}
	}
	var inits int
	for _, c := range p.Spec.InitContainers {
		if c.Name != ContainerCapture {
			continue
		}
		inits++
		// Exactly the capabilities the rules need (CAP_NET_ADMIN, no
		// CAP_NET_RAW: proxy/capture/nft's TestInstallCapabilities) and the
		// CA directory's chown.
		wantCmd, wantCaps := "/usr/local/bin/strait-init --exclude-gid 1337 --own-dir /var/lib/strait/ca --owner 65532:65532", "NET_ADMIN,CHOWN"
		if !capture {
			wantCaps = "CHOWN"
			wantCmd = "/usr/local/bin/strait-init --no-capture --own-dir /var/lib/strait/ca --owner 65532:65532"
		}
		var caps []string
		for _, c := range c.SecurityContext.Capabilities.Add {
			caps = append(caps, string(c))
		}
		if strings.Join(c.Command, " ") != wantCmd || strings.Join(caps, ",") != wantCaps || *c.SecurityContext.RunAsUser != 0 ||
			fmt.Sprint(c.SecurityContext.Capabilities.Drop) != "[ALL]" || *c.SecurityContext.AllowPrivilegeEscalation {
			t.Errorf("init container command %q caps %v, want %q %s", c.Command, caps, wantCmd, wantCaps)
		}
		// (The API server's ServiceAccount admission may add its token.)
		if len(c.VolumeMounts) == 0 || c.VolumeMounts[0].Name != VolumeCA || c.VolumeMounts[0].MountPath != "/var/lib/strait/ca" {
			t.Errorf("init container mounts %+v", c.VolumeMounts)
		}
	}
	if inits != 1 {
		t.Errorf("%d init containers named %s, want 1", inits, ContainerCapture)
	}
}

// With SPIRE (no CA directory) and no capture, there is nothing for an
// init container to do.
func TestSidecarWithoutCADir(t *testing.T) {
	in, err := New(Config{CADir: "-", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	inits, ctrs, vols := in.Sidecar(pod(map[string]string{"strait.io/capture": "false"}))
	if len(inits) != 0 || names(ctrs) != "strait-proxy" || volumeNames(vols) != "strait-proxy-config,strait-state" {
		t.Errorf("inits %s containers %s volumes %s", names(inits), names(ctrs), volumeNames(vols))
	}
	for _, annotations := range []map[string]string{nil, {"strait.io/capture": "true"}} {
		inits, _, _ = in.Sidecar(pod(annotations))
		if len(inits) != 1 || strings.Join(inits[0].Command, " ") != "/usr/local/bin/strait-init --exclude-gid 1337" || len(inits[0].VolumeMounts) != 0 ||
			fmt.Sprint(inits[0].SecurityContext.Capabilities.Add) != "[NET_ADMIN]" {
			t.Errorf("capture init without CA dir (annotations %v): %+v", annotations, inits)
		}
	}
}

// TestHandler posts admission reviews to the handler: a pod is injected
// with a JSON Patch, a body that is no review is a 400, and a review of
// something else than a pod creation is refused.
func TestHandler(t *testing.T) {
	in, _ := newTestInjector(t)
	srv := httptest.NewServer(in.Handler())
	defer srv.Close()
	post := func(path string, body []byte) (*http.Response, *admissionv1.AdmissionReview) {
		t.Helper()
		resp, err := http.Post(srv.URL+path, "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out admissionv1.AdmissionReview
		if resp.StatusCode == http.StatusOK {
			if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
				t.Fatal(err)
			}
		}
		return resp, &out
	}
	ar := func(req *admissionv1.AdmissionRequest) []byte {
		b, _ := json.Marshal(admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"}, Request: req})
		return b
	}
	resp, out := post(PathNamespace, ar(review(t, pod(nil))))
	if resp.StatusCode != http.StatusOK || out.Response == nil || !out.Response.Allowed || out.Response.Patch == nil || out.Kind != "AdmissionReview" {
		t.Errorf("namespace path: %d %+v", resp.StatusCode, out)
	}
	resp, out = post(PathPod, ar(review(t, pod(nil))))
	if resp.StatusCode != http.StatusOK || !out.Response.Allowed || out.Response.Patch != nil {
		t.Errorf("pod path, no annotation: %d %+v", resp.StatusCode, out.Response)
	}
	if resp, _ := post(PathNamespace, []byte("{not json")); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("junk body: %d, want 400", resp.StatusCode)
	}
	if resp, _ := post(PathNamespace, []byte(`{"kind":"AdmissionReview"}`)); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("no request: %d, want 400", resp.StatusCode)
	}
	req := review(t, pod(nil))
	req.Operation = admissionv1.Update
	if _, out := post(PathNamespace, ar(req)); out.Response == nil || out.Response.Allowed {
		t.Errorf("update reviewed: %+v", out.Response)
	}
	req = review(t, pod(nil))
	req.Object.Raw = []byte(`{"spec":{"containers":"nope"}}`)
	if _, out := post(PathNamespace, ar(req)); out.Response == nil || out.Response.Allowed {
		t.Errorf("bad pod reviewed: %+v", out.Response)
	}
	if got := testutil.ToFloat64(in.metrics.refusals.WithLabelValues(reasonBadRequest)); got != 4 {
		t.Errorf("strait_inject_refusals_total{reason=bad_request} = %v, want 4", got)
	}
}

func TestConfigValidation(t *testing.T) {
	_, err := New(Config{Image: "a b", PullPolicy: "Sometimes", ProxyUser: -1, ProxyGroup: -2, CADir: "relative"})
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, want := range []string{"white space", "Sometimes", "non-root", "proxy group -2", "not absolute"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}
