package federation

// Structured log keys, stable so that dashboards and alerts can rely on them.
const (
	logKey      = "key"
	logKind     = "kind"
	logRevision = "revision"
	logSource   = "source"
	logError    = "error"
	logRetryIn  = "retry_in"
	logLease    = "lease"
	logTTL      = "ttl_seconds"
	logReason   = "reason"
	logPath     = "path"
	logRecords  = "records"
	logSavedAt  = "saved_at"
	logStale    = "stale_gateways"
)
