package trust

// Log keys of this package: stable names for structured logs.
const (
	logKeyTrustDomain = "trust_domain"
	logKeySequence    = "sequence"
	logKeyPrevious    = "previous_sequence"
	logKeySPIFFEID    = "spiffe_id"
	logKeyNotAfter    = "not_after"
	logKeyError       = "error"
)
