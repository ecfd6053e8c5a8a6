package gateway

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/strait-mesh/strait/federation"
	"github.com/strait-mesh/strait/gateway/probe"
	"github.com/strait-mesh/strait/gateway/tunnel"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
	"github.com/strait-mesh/strait/trust"
)

// TestProbeResponder: west's ingress answers a probe from east's gateway
// with a statement over east's nonce that verifies as west's gateway and
// names east's gateway as the caller; any other use of the reserved name is
// refused with its code, and a regular export of the same name cannot take
// it over.
func TestProbeResponder(t *testing.T) {
	w := newWorld(t, "east", "west")
	west := w.start(w.config("west", "gw-0", "us-west"))
	// An export under the reserved name must not reach an endpoint.
	w.reg.add(&straitv1.Export{Cluster: "west", Namespace: probe.Namespace, Service: probe.Service,
		Ports:     []*straitv1.ServicePort{{Name: "tcp", Port: 2, Protocol: straitv1.Protocol_PROTOCOL_TCP}},
		Consumers: []string{"spiffe://east.test"}, CreatedAt: timestamppb.Now()})
	w.reg.add(&straitv1.Endpoint{Cluster: "west", Namespace: probe.Namespace, Service: probe.Service, Id: "impostor",
		Address: echoServer(t), Ready: true, SpiffeId: "spiffe://west.test/ns/" + probe.Namespace + "/sa/" + probe.Service})
	if w.reg.src.Snapshot().Export("west", federation.ServiceKey{Namespace: probe.Namespace, Name: probe.Service}) == nil {
		t.Fatal("the export under the reserved name is not in the snapshot")
	}
	westID, _ := trust.GatewayID(w.cas["west"].TrustDomain(), "west")
	eastID, _ := trust.GatewayID(w.cas["east"].TrustDomain(), "east")

	tests := []struct {
		name  string
		hdr   *straitv1.StreamHeader
		nonce []byte
		want  straitv1.StreamCode
	}{
		{"probe", probe.Header("east", "west"), bytes.Repeat([]byte{1}, probe.NonceSize), straitv1.StreamCode_STREAM_CODE_ACCEPTED},
		{"another port of the reserved name", func() *straitv1.StreamHeader {
			h := probe.Header("east", "west")
			h.Port = 2
			return h
		}(), nil, straitv1.StreamCode_STREAM_CODE_NOT_EXPORTED},
		{"for another cluster", probe.Header("east", "south"), bytes.Repeat([]byte{1}, probe.NonceSize), straitv1.StreamCode_STREAM_CODE_BAD_REQUEST},
		{"claiming another source cluster", probe.Header("north", "west"), bytes.Repeat([]byte{1}, probe.NonceSize), straitv1.StreamCode_STREAM_CODE_UNAUTHORIZED},
	}
	conn := w.dialAs(t, "east", west)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			st, err := conn.OpenStreamSync(ctx)
			if err != nil {
				t.Fatal(err)
			}
			_ = st.SetDeadline(time.Now().Add(10 * time.Second))
			buf, err := tunnel.AppendHeader(nil, tc.hdr)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := st.Write(append(buf, tc.nonce...)); err != nil {
				t.Fatal(err)
			}
			rep, err := tunnel.ReadReply(st, 0)
			if err != nil {
				t.Fatal(err)
			}
			if rep.GetCode() != tc.want {
				t.Fatalf("reply %s (%s), want %s", rep.GetCode(), rep.GetMessage(), tc.want)
			}
			if tc.want != straitv1.StreamCode_STREAM_CODE_ACCEPTED {
				return
			}
			signed, err := probe.ReadSigned(st)
			if err != nil {
				t.Fatal(err)
			}
			stmt, err := probe.Verify(signed, w.bundles, probe.VerifyOptions{Want: westID, Nonce: tc.nonce})
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if stmt.Caller != eastID.String() || stmt.Cluster != "west" || stmt.Gateway != "gw-0" {
				t.Fatalf("statement %+v, want caller %s, cluster west, gateway gw-0", stmt, eastID)
			}
			// The same statement does not pass for another nonce.
			if _, err := probe.Verify(signed, w.bundles, probe.VerifyOptions{Want: westID, Nonce: make([]byte, probe.NonceSize)}); !errors.Is(err, probe.ErrNonce) {
				t.Fatalf("Verify with another nonce: %v, want ErrNonce", err)
			}
			if _, err := io.ReadAll(st); err != nil {
				t.Fatalf("stream did not end cleanly after the statement: %v", err)
			}
		})
	}
}
