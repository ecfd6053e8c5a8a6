package session

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// TestRenewAt: a session stops taking streams RenewBefore ahead of the
// sooner of its two certificates' expiry, or at three quarters of the time
// left when that is sooner; a zero own expiry is ignored.
func TestRenewAt(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	h := time.Hour
	tests := []struct {
		name   string
		a, b   time.Time
		before time.Duration
		want   time.Time
	}{
		{"peer first", now.Add(h), now.Add(2 * h), time.Minute, now.Add(h - time.Minute)},
		{"own first", now.Add(2 * h), now.Add(h), time.Minute, now.Add(h - time.Minute)},
		{"own unknown", now.Add(h), time.Time{}, time.Minute, now.Add(h - time.Minute)},
		{"short lifetime: a quarter of it", now.Add(40 * time.Second), now.Add(h), 30 * time.Second, now.Add(30 * time.Second)},
		{"expired", now.Add(-time.Second), now.Add(h), time.Minute, now.Add(-time.Second)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := renewAt(now, tt.a, tt.b, tt.before)
			// A negative remainder gives a negative quarter: renewal is
			// at (or after) expiry, which is already past.
			if tt.name == "expired" {
				if got.After(now) {
					t.Fatalf("renewAt = %v, want not after now", got)
				}
				return
			}
			if !got.Equal(tt.want) {
				t.Fatalf("renewAt = %v, want %v", got.Sub(now), tt.want.Sub(now))
			}
		})
	}
}

// TestRefusalCodes: a refusal's code survives the answer, from its header
// or, without one (or with junk), from its HTTP status.
func TestRefusalCodes(t *testing.T) {
	for code := range straitv1.StreamCode_name {
		c := straitv1.StreamCode(code)
		if c <= straitv1.StreamCode_STREAM_CODE_ACCEPTED {
			continue
		}
		resp := &http.Response{StatusCode: statusOf(c), Header: http.Header{codeHeader: {strconv.Itoa(int(code))}}}
		if got := refusalOf(resp).Code; got != c {
			t.Errorf("code %v: refusalOf = %v", c, got)
		}
	}
	for _, tt := range []struct {
		status int
		header string
		want   straitv1.StreamCode
	}{
		{http.StatusForbidden, "", straitv1.StreamCode_STREAM_CODE_UNAUTHORIZED},
		{http.StatusNotFound, "junk", straitv1.StreamCode_STREAM_CODE_NOT_EXPORTED},
		{http.StatusServiceUnavailable, "1", straitv1.StreamCode_STREAM_CODE_NO_ENDPOINT}, // ACCEPTED is no refusal
		{http.StatusBadRequest, "999", straitv1.StreamCode_STREAM_CODE_BAD_REQUEST},
		{http.StatusTeapot, "", straitv1.StreamCode_STREAM_CODE_INTERNAL},
	} {
		resp := &http.Response{StatusCode: tt.status, Header: http.Header{}}
		if tt.header != "" {
			resp.Header.Set(codeHeader, tt.header)
		}
		if got := refusalOf(resp).Code; got != tt.want {
			t.Errorf("status %d, header %q: refusalOf = %v, want %v", tt.status, tt.header, got, tt.want)
		}
	}
}

// TestConfigValidate: every negative value is reported, at once.
func TestConfigValidate(t *testing.T) {
	if err := (Config{}).Validate(); err != nil {
		t.Fatalf("zero config: %v", err)
	}
	err := Config{MaxStreams: -1, IdleTimeout: -1, PingTimeout: -1, StreamWindow: -1}.Validate()
	if err == nil {
		t.Fatal("negative values accepted")
	}
	for _, want := range []string{"max streams", "idle timeout", "ping timeout", "windows"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
}
