package federation

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// cacheMetrics are the watch cache's Prometheus metrics. They always exist;
// they are registered only when the cache is given a Registerer.
type cacheMetrics struct {
	revision      prometheus.Gauge
	lastSync      prometheus.GaugeFunc
	staleness     prometheus.GaugeFunc
	relists       *prometheus.CounterVec
	watchRestarts *prometheus.CounterVec
	conflicts     prometheus.Gauge
	invalid       *prometheus.CounterVec
	persistErrors prometheus.Counter
	persists      prometheus.Counter
	staleGateways prometheus.Gauge
	snapshots     prometheus.Counter
}

func newCacheMetrics(staleness, lastSync func() float64) *cacheMetrics {
	return &cacheMetrics{
		revision: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "strait_federation_snapshot_revision",
			Help: "etcd revision of the published snapshot (the sum over sources when there are several).",
		}),
		lastSync: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "strait_federation_last_sync_timestamp_seconds",
			Help: "Unix time at which every source was last heard from (an event or a progress notification).",
		}, lastSync),
		staleness: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "strait_federation_config_staleness_seconds",
			Help: "Seconds since the least recently heard source was last heard from; grows while etcd is unreachable.",
		}, staleness),
		relists: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strait_federation_relists_total",
			Help: "Completed full paginated lists of the keyspace, by source (the first list and one per compaction).",
		}, []string{"source"}),
		watchRestarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strait_federation_watch_restarts_total",
			Help: "Watches restarted after an error, by source.",
		}, []string{"source"}),
		conflicts: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "strait_federation_service_conflicts",
			Help: "Exports whose ports conflict with the oldest export of the same global service.",
		}),
		invalid: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strait_federation_invalid_records_total",
			Help: "Records skipped because they failed to decode or validate, once per key revision, by kind and reason (key, size, decode, validate, server_identity: an endpoint whose SPIFFE ID may not serve its service).",
		}, []string{"kind", "reason"}),
		persistErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strait_federation_snapshot_persist_errors_total",
			Help: "Failed writes of the snapshot file.",
		}),
		persists: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strait_federation_snapshot_persists_total",
			Help: "Snapshots written to the snapshot file.",
		}),
		staleGateways: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "strait_federation_stale_gateways",
			Help: "Gateways withdrawn because their records were not rewritten within the staleness period.",
		}),
		snapshots: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strait_federation_snapshots_published_total",
			Help: "Snapshots published to readers.",
		}),
	}
}

func (m *cacheMetrics) register(r prometheus.Registerer) error {
	if r == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{m.revision, m.lastSync, m.staleness, m.relists,
		m.watchRestarts, m.conflicts, m.invalid, m.persistErrors, m.persists, m.staleGateways, m.snapshots} {
		if err := r.Register(c); err != nil {
			return fmt.Errorf("federation: register metrics: %w", err)
		}
	}
	return nil
}
