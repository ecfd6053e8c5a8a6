package sni

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// hello returns the first record a crypto/tls client writes.
func hello(t testing.TB, serverName string) []byte {
	t.Helper()
	return helloWith(t, &tls.Config{ServerName: serverName, InsecureSkipVerify: true})
}

// helloWith returns the first record a crypto/tls client configured with
// cfg writes.
func helloWith(t testing.TB, cfg *tls.Config) []byte {
	t.Helper()
	client, server := net.Pipe()
	defer client.Close()
	defer server.Close()
	go func() {
		c := tls.Client(client, cfg)
		_ = c.Handshake()
	}()
	_ = server.SetReadDeadline(time.Now().Add(5 * time.Second))
	var hdr [HeaderLen]byte
	if _, err := io.ReadFull(server, hdr[:]); err != nil {
		t.Fatal(err)
	}
	rec := make([]byte, HeaderLen+recordLen(hdr[:]))
	copy(rec, hdr[:])
	if _, err := io.ReadFull(server, rec[HeaderLen:]); err != nil {
		t.Fatal(err)
	}
	return rec
}

func TestParseClientHello(t *testing.T) {
	rec := hello(t, "9000.echo.default.any.strait")
	got, err := ParseClientHello(rec)
	if err != nil || got != "9000.echo.default.any.strait" {
		t.Fatalf("got %q, %v", got, err)
	}
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrMalformed},
		{"not handshake", append([]byte{23}, rec[1:]...), ErrNotHandshake},
		{"truncated", rec[:len(rec)-1], ErrMalformed},
		{"extra byte", append(append([]byte(nil), rec...), 0), ErrMalformed},
		{"too large", []byte{22, 3, 1, 0x40, 0x01}, ErrRecordTooLarge},
		{"not client hello", []byte{22, 3, 1, 0, 4, 2, 0, 0, 0}, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseClientHello(tt.in); !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestNoServerName(t *testing.T) {
	// An IP address as ServerName sends no SNI.
	rec := hello(t, "127.0.0.1")
	if _, err := ParseClientHello(rec); !errors.Is(err, ErrNoServerName) {
		t.Fatalf("got %v, want ErrNoServerName", err)
	}
}

func TestPeekReadsOneRecordOnly(t *testing.T) {
	rec := hello(t, "1.a.b.c.strait")
	client, server := net.Pipe()
	defer client.Close()
	defer server.Close()
	go func() { _, _ = client.Write(append(append([]byte(nil), rec...), "after"...)) }()
	name, got, err := Peek(server, 5*time.Second)
	if err != nil || name != "1.a.b.c.strait" || !bytes.Equal(got, rec) {
		t.Fatalf("got %q %d bytes %v", name, len(got), err)
	}
	rest := make([]byte, 5)
	if _, err := io.ReadFull(server, rest); err != nil || string(rest) != "after" {
		t.Fatalf("rest %q %v", rest, err)
	}
}

func TestPeekTimeout(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	defer server.Close()
	_, _, err := Peek(server, 10*time.Millisecond)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("got %v, want a timeout", err)
	}
}
