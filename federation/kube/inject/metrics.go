package inject

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the injector's Prometheus metrics.
type metrics struct {
	reviews  *prometheus.CounterVec
	refusals *prometheus.CounterVec
	duration prometheus.Histogram
}

func newMetrics() *metrics {
	m := &metrics{
		reviews: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strait_inject_reviews_total",
			Help: "Admission reviews of pods, by result (injected, opted_out, not_requested, already_injected, refused, error).",
		}, []string{"result"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strait_inject_refusals_total",
			Help: "Admission reviews answered with an error, by reason (bad_annotation, bad_request, name_conflict).",
		}, []string{"reason"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "strait_inject_review_duration_seconds",
			Help:    "Time to answer an admission review, from the request's first byte read to the response written.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 8),
		}),
	}
	for _, r := range []Result{ResultInjected, ResultOptedOut, ResultNotRequested, ResultAlreadyInjected, ResultRefused, resultError} {
		m.reviews.WithLabelValues(string(r))
	}
	for _, r := range []string{reasonBadAnnotation, reasonBadRequest, reasonNameConflict} {
		m.refusals.WithLabelValues(r)
	}
	return m
}

func (m *metrics) register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.reviews, m.refusals, m.duration} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return fmt.Errorf("inject: metrics: %w", err)
			}
		}
	}
	return nil
}
