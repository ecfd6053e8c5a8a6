package proxyproto

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"
)

func TestListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pl := NewListener(ln, ListenerConfig{HeaderTimeout: 2 * time.Second})
	defer pl.Close()

	tests := []struct {
		name    string
		send    func(c net.Conn)
		wantID  string
		wantErr error
	}{
		{
			name: "header then payload",
			send: func(c net.Conn) {
				h := Header{Command: Proxy, Source: netip.MustParseAddrPort("10.1.1.1:5"), Destination: netip.MustParseAddrPort("10.1.1.2:6"),
					TLVs: []TLV{{Type: TypeSPIFFEID, Value: []byte("spiffe://td/ns/a/sa/b")}}}
				b, _ := h.MarshalBinary()
				_, _ = c.Write(append(b, "hello"...))
			},
			wantID: "spiffe://td/ns/a/sa/b",
		},
		{
			name:    "no header",
			send:    func(c net.Conn) { _, _ = c.Write([]byte("hello, no header here")) },
			wantErr: ErrNoHeader,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			tt.send(c)
			_ = c.(*net.TCPConn).CloseWrite()
			sc, err := pl.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer sc.Close()
			body, err := io.ReadAll(sc)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Read error = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil || string(body) != "hello" {
				t.Fatalf("ReadAll = %q, %v", body, err)
			}
			h, _ := sc.(*Conn).Header()
			if id, _ := h.SPIFFEID(); id != tt.wantID {
				t.Errorf("SPIFFE ID = %q, want %q", id, tt.wantID)
			}
		})
	}
}

func TestConnHeaderTimeout(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	c := NewConn(b, 50*time.Millisecond)
	_, err := c.Header()
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Header() error = %v, want a timeout", err)
	}
}
