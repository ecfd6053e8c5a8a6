package tunnel

import (
	"fmt"
	"io"

	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// The TLS alert record that carries a refusal.
const (
	// RefusalLen is the length of a refusal record.
	RefusalLen = 7
	// AlertBase is added to a StreamCode to form the alert description.
	// 224-255 is the private-use range of the TLS alert registry.
	AlertBase = 224

	recordTypeAlert = 21
	alertLevelFatal = 2
)

// Refusal returns the alert record that refuses a connection with code.
func Refusal(code straitv1.StreamCode) [RefusalLen]byte {
	return [RefusalLen]byte{recordTypeAlert, 0x03, 0x03, 0x00, 0x02, alertLevelFatal, byte(AlertBase + refusalCode(code))}
}

// WriteRefusal writes the alert record refusing a connection with code. The
// caller closes the connection afterwards.
func WriteRefusal(w io.Writer, code straitv1.StreamCode) error {
	rec := Refusal(code)
	if _, err := w.Write(rec[:]); err != nil {
		return fmt.Errorf("tunnel: write refusal: %w", err)
	}
	return nil
}

// ParseRefusal reports whether b starts with a gateway refusal record and
// which code it carries. An alert with a private-use description outside the
// closed set of codes is reported as STREAM_CODE_INTERNAL. Any other record,
// including the destination's own TLS alerts, returns ok false.
func ParseRefusal(b []byte) (code straitv1.StreamCode, ok bool) {
	if len(b) < RefusalLen {
		return 0, false
	}
	if b[0] != recordTypeAlert || b[1] != 0x03 || b[2] != 0x03 || b[3] != 0x00 || b[4] != 0x02 {
		return 0, false
	}
	if b[5] != alertLevelFatal || b[6] < AlertBase {
		return 0, false
	}
	return refusalCode(straitv1.StreamCode(b[6] - AlertBase)), true
}

// refusalCode maps codes that cannot refuse (unknown ones and ACCEPTED) to
// STREAM_CODE_INTERNAL.
func refusalCode(c straitv1.StreamCode) straitv1.StreamCode {
	if c == straitv1.StreamCode_STREAM_CODE_ACCEPTED {
		return straitv1.StreamCode_STREAM_CODE_INTERNAL
	}
	return Known(c)
}
