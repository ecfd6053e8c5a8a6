package proxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"

	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

func TestParseRefusal(t *testing.T) {
	tests := []struct {
		name   string
		in     []byte
		want   straitv1.StreamCode
		wantOK bool
	}{
		{"no endpoint", []byte{0x15, 3, 3, 0, 2, 2, 224 + 4}, straitv1.StreamCode_STREAM_CODE_NO_ENDPOINT, true},
		{"draining", RefusalRecord(straitv1.StreamCode_STREAM_CODE_DRAINING), straitv1.StreamCode_STREAM_CODE_DRAINING, true},
		{"TLS 1.0 record version", []byte{0x15, 3, 1, 0, 2, 2, 224 + 2}, straitv1.StreamCode_STREAM_CODE_NOT_EXPORTED, true},
		{"unknown code reads as internal", []byte{0x15, 3, 3, 0, 2, 2, 255}, straitv1.StreamCode_STREAM_CODE_INTERNAL, true},
		{"unspecified reads as internal", []byte{0x15, 3, 3, 0, 2, 2, 224}, straitv1.StreamCode_STREAM_CODE_INTERNAL, true},
		{"standard alert", []byte{0x15, 3, 3, 0, 2, 2, 40}, 0, false},
		{"warning level", []byte{0x15, 3, 3, 0, 2, 1, 226}, 0, false},
		{"handshake record", []byte{0x16, 3, 3, 0, 2, 2, 226}, 0, false},
		{"short", []byte{0x15, 3, 3, 0, 2, 2}, 0, false},
		{"long", []byte{0x15, 3, 3, 0, 3, 2, 226, 0}, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ParseRefusal(tt.in)
			if ok != tt.wantOK || got != tt.want {
				t.Errorf("ParseRefusal() = %v, %v; want %v, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

// TestRefusalConnPassesThrough: bytes that are not a refusal reach the TLS
// client unchanged, however the server splits them.
func TestRefusalConnPassesThrough(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
	}{
		{"server hello", append([]byte{0x16, 3, 3, 0, 4}, "abcd"...)},
		{"standard alert", []byte{0x15, 3, 3, 0, 2, 2, 40}},
		{"truncated alert", []byte{0x15, 3, 3, 0, 2, 2}},
		{"short", []byte{0x16, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := net.Pipe()
			go func() {
				for _, c := range tt.in { // one byte at a time
					_, _ = a.Write([]byte{c})
				}
				a.Close()
			}()
			got, err := io.ReadAll(&refusalConn{Conn: b})
			if !bytes.Equal(got, tt.in) {
				t.Errorf("read %x, %v; want %x", got, err, tt.in)
			}
		})
	}
}

func TestRefusalConnDetects(t *testing.T) {
	a, b := net.Pipe()
	go func() {
		_, _ = a.Write(RefusalRecord(straitv1.StreamCode_STREAM_CODE_DRAINING))
		a.Close()
	}()
	_, err := (&refusalConn{Conn: b}).Read(make([]byte, 10))
	var re *RouteError
	if !errors.As(err, &re) || re.Code != straitv1.StreamCode_STREAM_CODE_DRAINING || !re.Retryable() {
		t.Fatalf("Read() error = %v, want a retryable DRAINING RouteError", err)
	}
}

func FuzzParseRefusal(f *testing.F) {
	f.Add(RefusalRecord(straitv1.StreamCode_STREAM_CODE_NO_ENDPOINT))
	f.Add([]byte{0x16, 3, 3, 0, 2, 2, 226})
	f.Fuzz(func(t *testing.T, in []byte) {
		code, ok := ParseRefusal(in)
		if !ok {
			return
		}
		if _, known := straitv1.StreamCode_name[int32(code)]; !known {
			t.Fatalf("unknown code %d", code)
		}
		if !bytes.Equal(RefusalRecord(code)[5:], in[5:]) && code != straitv1.StreamCode_STREAM_CODE_INTERNAL {
			t.Fatalf("code %v does not re-encode to %x", code, in)
		}
	})
}
