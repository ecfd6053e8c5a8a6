package inject

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The webhook's paths: the MutatingWebhookConfiguration calls PathNamespace
// for the pods of namespaces labelled strait.io/inject=enabled and PathPod
// for the others.
const (
	PathNamespace = "/inject/namespace"
	PathPod       = "/inject/pod"
)

const (
	resultError         Result = "error"
	reasonBadAnnotation        = "bad_annotation"
	reasonBadRequest           = "bad_request"
	reasonNameConflict         = "name_conflict"
	// maxReviewBytes bounds an admission review's body (the API server
	// sends at most 3 MiB objects).
	maxReviewBytes = 8 << 20
)

// Handler serves the webhook's two paths.
func (in *Injector) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+PathNamespace, func(w http.ResponseWriter, r *http.Request) { in.serve(w, r, ModeNamespace) })
	mux.HandleFunc("POST "+PathPod, func(w http.ResponseWriter, r *http.Request) { in.serve(w, r, ModePod) })
	return mux
}

func (in *Injector) serve(w http.ResponseWriter, r *http.Request, mode Mode) {
	start := time.Now()
	defer func() { in.metrics.duration.Observe(time.Since(start).Seconds()) }()
	body, err := io.ReadAll(io.LimitReader(r.Body, maxReviewBytes+1))
	if err == nil && len(body) > maxReviewBytes {
		err = fmt.Errorf("body larger than %d bytes", maxReviewBytes)
	}
	var review admissionv1.AdmissionReview
	if err == nil {
		err = json.Unmarshal(body, &review)
	}
	if err == nil && review.Request == nil {
		err = errors.New("no request in the admission review")
	}
	if err != nil {
		err = fmt.Errorf("%w: %w", ErrBadRequest, err)
		in.refuse(reasonBadRequest, "", "", err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	resp := in.Review(review.Request, mode)
	out, err := json.Marshal(admissionv1.AdmissionReview{TypeMeta: review.TypeMeta, Response: resp})
	if err != nil {
		in.metrics.reviews.WithLabelValues(string(resultError)).Inc()
		in.cfg.Logger.Error("inject: encode the admission response", logError, err)
		http.Error(w, "encode the admission response", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out)
}

// Review answers one admission request in mode: allowed, with a JSON Patch
// when the pod gets the sidecar, or refused with a message naming the
// problem.
func (in *Injector) Review(req *admissionv1.AdmissionRequest, mode Mode) *admissionv1.AdmissionResponse {
	resp := &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true}
	deny := func(reason string, err error) *admissionv1.AdmissionResponse {
		in.refuse(reason, req.Namespace, req.Name, err)
		resp.Allowed = false
		resp.Result = &metav1.Status{Status: metav1.StatusFailure, Code: http.StatusBadRequest,
			Reason: metav1.StatusReasonBadRequest, Message: "strait sidecar injector: " + err.Error()}
		return resp
	}
	if req.Kind.Kind != "Pod" || req.Kind.Group != "" || req.Operation != admissionv1.Create {
		return deny(reasonBadRequest, fmt.Errorf("%w: %s of %s: only pod creations are reviewed", ErrBadRequest, req.Operation, req.Kind.Kind))
	}
	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		return deny(reasonBadRequest, fmt.Errorf("%w: pod: %w", ErrBadRequest, err))
	}
	result, err := Decide(&pod, mode)
	if err != nil {
		return deny(reasonBadAnnotation, err)
	}
	if result == ResultInjected {
		ops, err := in.Patch(&pod)
		if err != nil {
			return deny(reasonNameConflict, err)
		}
		patch, err := json.Marshal(ops)
		if err != nil {
			in.metrics.reviews.WithLabelValues(string(resultError)).Inc()
			in.cfg.Logger.Error("inject: encode the patch", logNamespace, req.Namespace, logError, err)
			resp.Allowed = false
			resp.Result = &metav1.Status{Status: metav1.StatusFailure, Code: http.StatusInternalServerError,
				Message: "strait sidecar injector: encode the patch: " + err.Error()}
			return resp
		}
		resp.Patch, resp.PatchType = patch, ptr(admissionv1.PatchTypeJSONPatch)
	}
	in.metrics.reviews.WithLabelValues(string(result)).Inc()
	in.cfg.Logger.Debug("inject: pod reviewed", logNamespace, req.Namespace, logName, podName(req, &pod), logResult, string(result))
	return resp
}

// refuse counts and logs a refusal.
func (in *Injector) refuse(reason, namespace, name string, err error) {
	in.metrics.reviews.WithLabelValues(string(ResultRefused)).Inc()
	in.metrics.refusals.WithLabelValues(reason).Inc()
	in.warn.Warn(in.cfg.Logger, "inject: pod refused", logReason, reason, logNamespace, namespace, logName, name, logError, err)
}

// podName is the pod's name, or its generateName prefix before the API
// server names it.
func podName(req *admissionv1.AdmissionRequest, pod *corev1.Pod) string {
	if req.Name != "" {
		return req.Name
	}
	return pod.GenerateName
}
