package dns

// Keys of the structured log fields.
const (
	logService  = "service"
	logUpstream = "upstream"
	logErr      = "err"
)
