package gateway

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/strait-mesh/strait/gateway/tunnel"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

func TestBadStreams(t *testing.T) {
	w := newWorld(t, "a", "b")
	w.export("b", "echo", 9000, "spiffe://a.test")
	w.endpoint("b", "echo", "e1", echoServer(t))
	cfg := w.config("b", "b1", "")
	cfg.HeaderTimeout = 200 * time.Millisecond
	b := w.start(cfg)
	conn := w.dialAs(t, "a", b)

	oversized := make([]byte, 2)
	binary.BigEndian.PutUint16(oversized, tunnel.MaxFrameSize+1)
	good, _ := tunnel.AppendHeader(nil, &straitv1.StreamHeader{Service: "echo", Namespace: "default", Port: 9000, SourceCluster: "a"})
	tests := []struct {
		name      string
		send      []byte
		wantReply straitv1.StreamCode // UNSPECIFIED: the stream is reset without a reply
		wantReset quic.StreamErrorCode
	}{
		{"no header", nil, 0, StreamErrHeaderTimeout},
		{"partial header", good[:5], 0, StreamErrHeaderTimeout},
		{"over the limit", oversized, straitv1.StreamCode_STREAM_CODE_BAD_REQUEST, 0},
		{"garbage", []byte{0, 3, 0xff, 0xff, 0xff}, straitv1.StreamCode_STREAM_CODE_BAD_REQUEST, 0},
		{"empty header", []byte{0, 0}, straitv1.StreamCode_STREAM_CODE_BAD_REQUEST, 0},
		{"spoofed source", mustHeader(t, &straitv1.StreamHeader{Service: "echo", Namespace: "default", Port: 9000, SourceCluster: "b"}), straitv1.StreamCode_STREAM_CODE_UNAUTHORIZED, 0},
		{"other target", mustHeader(t, &straitv1.StreamHeader{Service: "echo", Namespace: "default", Port: 9000, SourceCluster: "a", TargetCluster: "c"}), straitv1.StreamCode_STREAM_CODE_BAD_REQUEST, 0},
		{"NUL in name", mustHeader(t, &straitv1.StreamHeader{Service: "ec\x00ho", Namespace: "default", Port: 9000, SourceCluster: "a"}), straitv1.StreamCode_STREAM_CODE_BAD_REQUEST, 0},
		{"not exported", mustHeader(t, &straitv1.StreamHeader{Service: "other", Namespace: "default", Port: 9000, SourceCluster: "a"}), straitv1.StreamCode_STREAM_CODE_NOT_EXPORTED, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := conn.OpenStreamSync(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(tt.send) > 0 {
				if _, err := st.Write(tt.send); err != nil {
					t.Fatal(err)
				}
			} else {
				// A stream carrying nothing is not announced; opening the
				// next one announces it implicitly (RFC 9000, 3.2).
				next, err := conn.OpenStreamSync(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				_, _ = next.Write([]byte{0})
				defer next.CancelWrite(0)
			}
			start := time.Now()
			_ = st.SetReadDeadline(time.Now().Add(5 * time.Second))
			rep, err := tunnel.ReadReply(st, 0)
			if tt.wantReply == 0 {
				var se *quic.StreamError
				if !errors.As(err, &se) || se.ErrorCode != tt.wantReset {
					t.Fatalf("got reply %v, err %v; want reset %#x", rep, err, tt.wantReset)
				}
				t.Logf("reset after %v", time.Since(start).Round(time.Millisecond))
				return
			}
			if err != nil || rep.GetCode() != tt.wantReply {
				t.Fatalf("got reply %v, err %v; want %v", rep, err, tt.wantReply)
			}
			if _, err := io.ReadAll(st); err != nil {
				t.Fatalf("after the reply: %v (want FIN)", err)
			}
		})
	}
	// The connection survived every bad stream.
	st, err := conn.OpenStreamSync(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Write(append(good, "hi"...)); err != nil {
		t.Fatal(err)
	}
	rep, err := tunnel.ReadReply(st, 5*time.Second)
	if err != nil || rep.GetCode() != straitv1.StreamCode_STREAM_CODE_ACCEPTED {
		t.Fatalf("after bad streams: %v %v", rep, err)
	}
}

func mustHeader(t testing.TB, h *straitv1.StreamHeader) []byte {
	b, err := tunnel.AppendHeader(nil, h)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestConnsPerPeer(t *testing.T) {
	w := newWorld(t, "a", "b")
	cfg := w.config("b", "b1", "")
	cfg.MaxConnsPerPeer = 2
	b := w.start(cfg)
	first, second := w.dialAs(t, "a", b), w.dialAs(t, "a", b)
	// A reply proves that the gateway tracks the connection.
	for _, c := range []*quic.Conn{first, second} {
		st, err := c.OpenStreamSync(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		_, _ = st.Write(mustHeader(t, &straitv1.StreamHeader{Service: "x", Namespace: "default", Port: 1, SourceCluster: "a"}))
		if _, err := tunnel.ReadReply(st, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	third := w.dialAs(t, "a", b)
	select {
	case <-third.Context().Done():
	case <-time.After(10 * time.Second):
		t.Fatal("third connection of one peer was kept")
	}
	var ae *quic.ApplicationError
	if cause := context.Cause(third.Context()); !errors.As(cause, &ae) || ae.ErrorCode != ConnErrRefused {
		t.Fatalf("third connection closed with %v, want ConnErrRefused", cause)
	}
	for _, c := range []*quic.Conn{first, second} {
		if c.Context().Err() != nil {
			t.Fatal("an allowed connection was closed")
		}
	}
}

// TestClusterTrustDomainBinding: a peer authenticated in one trust domain
// may not speak for a cluster whose gateways announce another. The ingress
// refuses such a peer at the handshake (TestIngressRefusesUnknownGateways);
// a connection made before the cluster's record changed is held to the new
// record stream by stream.
func TestClusterTrustDomainBinding(t *testing.T) {
	w := newWorld(t, "a", "b", "c")
	w.export("b", "echo", 9000, "spiffe://a.test", "spiffe://c.test")
	w.endpoint("b", "echo", "e1", echoServer(t))
	b := w.start(w.config("b", "b1", ""))
	conn := w.dialAs(t, "a", b)
	// A reply proves that the ingress accepted the connection.
	first, err := conn.OpenStreamSync(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	_, _ = first.Write(mustHeader(t, &straitv1.StreamHeader{Service: "nope", Namespace: "default", Port: 9000, SourceCluster: "a"}))
	if _, err := tunnel.ReadReply(first, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	// Cluster a's gateways now announce trust domain c.test; the peer with
	// an a.test gateway SVID claiming to be cluster a is no longer believed.
	w.reg.Put("dialer/a", &straitv1.Gateway{Cluster: "a", Id: "a1", TrustDomain: "c.test", SpiffeId: "spiffe://c.test/strait/gateway/a", Address: "127.0.0.1:1"})
	st, err := conn.OpenStreamSync(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	_, _ = st.Write(mustHeader(t, &straitv1.StreamHeader{Service: "echo", Namespace: "default", Port: 9000, SourceCluster: "a"}))
	rep, err := tunnel.ReadReply(st, 5*time.Second)
	if err != nil || rep.GetCode() != straitv1.StreamCode_STREAM_CODE_UNAUTHORIZED {
		t.Fatalf("got %v %v, want UNAUTHORIZED", rep, err)
	}
}
