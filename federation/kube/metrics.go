package kube

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the controller's Prometheus metrics. They always exist; they
// are registered only when the controller is given a Registerer.
type metrics struct {
	reconciles *prometheus.CounterVec
	duration   prometheus.Histogram
	apiErrors  *prometheus.CounterVec
	exports    prometheus.Gauge
	imports    prometheus.Gauge
	conflicts  prometheus.Gauge
}

func newMetrics() *metrics {
	return &metrics{
		reconciles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strait_kube_reconciles_total",
			Help: "Full reconciliations of the cluster with the federation, by result (ok, error).",
		}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "strait_kube_reconcile_duration_seconds",
			Help:    "Duration of a full reconciliation.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 8),
		}),
		apiErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strait_kube_errors_total",
			Help: "Failed calls to the Kubernetes API or to etcd, by operation.",
		}, []string{"op"}),
		exports: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "strait_kube_service_exports",
			Help: "ServiceExports of the cluster whose Valid condition is true.",
		}),
		imports: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "strait_kube_service_imports",
			Help: "ServiceImports the controller keeps in the cluster.",
		}),
		conflicts: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "strait_kube_service_export_conflicts",
			Help: "ServiceExports of the cluster whose Conflict condition is true.",
		}),
	}
}

func (m *metrics) register(r prometheus.Registerer) error {
	if r == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{m.reconciles, m.duration, m.apiErrors, m.exports, m.imports, m.conflicts} {
		if err := r.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				continue
			}
			return fmt.Errorf("kube: metrics: %w", err)
		}
	}
	return nil
}
