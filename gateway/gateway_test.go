package gateway

import (
	"bytes"
	"crypto/rand"
	"testing"

	"github.com/strait-mesh/strait/gateway/tunnel"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// twoClusters starts gateways a1 and b1 and an echo endpoint of
// default/echo port 9000 in cluster b, consumable by a.
func twoClusters(t *testing.T) (*world, *running, *running) {
	w := newWorld(t, "a", "b")
	w.export("b", "echo", 9000, "spiffe://a.test")
	w.endpoint("b", "echo", "e1", echoServer(t))
	a := w.start(w.config("a", "a1", "r1"))
	b := w.start(w.config("b", "b1", "r1"))
	return w, a, b
}

func TestEndToEnd(t *testing.T) {
	_, a, _ := twoClusters(t)
	tests := []struct {
		name     string
		sni      string
		wantCode straitv1.StreamCode // ACCEPTED means the echo must come back
	}{
		{"any cluster", "9000.echo.default.any.strait", straitv1.StreamCode_STREAM_CODE_ACCEPTED},
		{"pinned cluster", "9000.echo.default.b.strait", straitv1.StreamCode_STREAM_CODE_ACCEPTED},
		{"unknown service", "9000.nope.default.any.strait", straitv1.StreamCode_STREAM_CODE_NOT_EXPORTED},
		{"unknown port", "9001.echo.default.any.strait", straitv1.StreamCode_STREAM_CODE_NOT_EXPORTED},
		{"wrong cluster", "9000.echo.default.c.strait", straitv1.StreamCode_STREAM_CODE_NOT_EXPORTED},
		{"bad name", "example.com", straitv1.StreamCode_STREAM_CODE_BAD_REQUEST},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hello := clientHello(t, tt.sni)
			payload := make([]byte, 64<<10)
			_, _ = rand.Read(payload)
			got, err := roundTrip(a.EgressAddr(), hello, payload)
			if err != nil {
				t.Fatal(err)
			}
			if tt.wantCode == straitv1.StreamCode_STREAM_CODE_ACCEPTED {
				want := append(append([]byte(nil), hello...), payload...)
				if !bytes.Equal(got, want) {
					t.Fatalf("echo: got %d bytes, want %d", len(got), len(want))
				}
				return
			}
			code, ok := tunnel.ParseRefusal(got)
			if !ok || code != tt.wantCode || len(got) != tunnel.RefusalLen {
				t.Fatalf("got % x, want refusal %v", got, tt.wantCode)
			}
		})
	}
}

func TestUnauthorizedConsumer(t *testing.T) {
	w := newWorld(t, "a", "b")
	w.export("b", "secret", 9000) // consumers empty: only b.test
	w.endpoint("b", "secret", "e1", echoServer(t))
	a := w.start(w.config("a", "a1", ""))
	w.start(w.config("b", "b1", ""))
	got, err := roundTrip(a.EgressAddr(), clientHello(t, "9000.secret.default.any.strait"), []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	if code, ok := tunnel.ParseRefusal(got); !ok || code != straitv1.StreamCode_STREAM_CODE_UNAUTHORIZED {
		t.Fatalf("got % x, want UNAUTHORIZED refusal", got)
	}
}

func TestNoEndpoint(t *testing.T) {
	w := newWorld(t, "a", "b")
	w.export("b", "echo", 9000, "spiffe://a.test/ns/default/sa/client")
	a := w.start(w.config("a", "a1", ""))
	w.start(w.config("b", "b1", ""))
	got, err := roundTrip(a.EgressAddr(), clientHello(t, "9000.echo.default.any.strait"), []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	if code, ok := tunnel.ParseRefusal(got); !ok || code != straitv1.StreamCode_STREAM_CODE_NO_ENDPOINT {
		t.Fatalf("got % x, want NO_ENDPOINT refusal", got)
	}
}
