package proxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"

	"github.com/strait-mesh/strait/gateway/tunnel"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

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
		_ = tunnel.WriteRefusal(a, straitv1.StreamCode_STREAM_CODE_DRAINING)
		a.Close()
	}()
	_, err := (&refusalConn{Conn: b}).Read(make([]byte, 10))
	var re *RouteError
	if !errors.As(err, &re) || re.Code != straitv1.StreamCode_STREAM_CODE_DRAINING || !re.Retryable() {
		t.Fatalf("Read() error = %v, want a retryable DRAINING RouteError", err)
	}
}
