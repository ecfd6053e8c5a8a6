package probe

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/strait-mesh/strait/trust"
)

func newCA(t *testing.T, td string) *trust.CA {
	t.Helper()
	ca, err := trust.NewCA(trust.CAConfig{TrustDomain: spiffeid.RequireTrustDomainFromString(td)})
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func TestSignVerify(t *testing.T) {
	west, east, other := newCA(t, "west.test"), newCA(t, "east.test"), newCA(t, "west.test")
	westGW := spiffeid.RequireFromString("spiffe://west.test/strait/gateway/west")
	westApp := spiffeid.RequireFromString("spiffe://west.test/ns/default/sa/hello")
	bundles := x509bundle.NewSet(west.Bundle(), east.Bundle())
	nonce := bytes.Repeat([]byte{7}, NonceSize)
	now := time.Now()

	sign := func(ca *trust.CA, id spiffeid.ID, st Statement) *Signed {
		t.Helper()
		svid, err := ca.IssueX509SVID(id, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		s, err := Sign(st, svid)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	good := Statement{Nonce: nonce, Responder: westGW.String(), Cluster: "west", Gateway: "gw-0", Time: now}
	tests := []struct {
		name   string
		signed func() *Signed
		opts   VerifyOptions
		want   error
	}{
		{"valid", func() *Signed { return sign(west, westGW, good) }, VerifyOptions{Want: westGW, Nonce: nonce, Now: now}, nil},
		{"other nonce", func() *Signed { return sign(west, westGW, good) }, VerifyOptions{Want: westGW, Nonce: bytes.Repeat([]byte{8}, NonceSize), Now: now}, ErrNonce},
		{"too old", func() *Signed { return sign(west, westGW, good) }, VerifyOptions{Want: westGW, Nonce: nonce, Now: now.Add(2 * DefaultMaxAge)}, ErrNonce},
		{"another identity of the right domain", func() *Signed {
			st := good
			st.Responder = westApp.String()
			return sign(west, westApp, st)
		}, VerifyOptions{Want: westGW, Nonce: nonce, Now: now}, ErrIdentity},
		{"a CA the bundles do not hold", func() *Signed { return sign(other, westGW, good) }, VerifyOptions{Want: westGW, Nonce: nonce, Now: now}, ErrIdentity},
		{"statement names someone else", func() *Signed {
			st := good
			st.Responder = "spiffe://west.test/strait/gateway/other"
			return sign(west, westGW, st)
		}, VerifyOptions{Want: westGW, Nonce: nonce, Now: now}, ErrIdentity},
		{"tampered statement", func() *Signed {
			s := sign(west, westGW, good)
			s.Statement = bytes.Replace(s.Statement, []byte(`"gw-0"`), []byte(`"gw-9"`), 1)
			return s
		}, VerifyOptions{Want: westGW, Nonce: nonce, Now: now}, ErrSignature},
		{"signature of another statement", func() *Signed {
			s := sign(west, westGW, good)
			st := good
			st.Gateway = "gw-1"
			s.Signature = sign(west, westGW, st).Signature
			return s
		}, VerifyOptions{Want: westGW, Nonce: nonce, Now: now}, ErrSignature},
		{"no chain", func() *Signed { s := sign(west, westGW, good); s.Chain = nil; return s }, VerifyOptions{Want: westGW, Nonce: nonce, Now: now}, ErrBadFrame},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Through the wire format, as a caller receives it.
			var buf bytes.Buffer
			if err := WriteSigned(&buf, tc.signed()); err != nil {
				t.Fatal(err)
			}
			s, err := ReadSigned(&buf)
			if err == nil {
				_, err = Verify(s, bundles, tc.opts)
			}
			if tc.want == nil && err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("Verify: %v, want %v", err, tc.want)
			}
		})
	}
}

func TestReadSignedRefusesLargeFrames(t *testing.T) {
	_, err := ReadSigned(bytes.NewReader([]byte{0xff, 0xff, 0xff, 0xff}))
	if !errors.Is(err, ErrBadFrame) {
		t.Fatalf("ReadSigned: %v, want ErrBadFrame", err)
	}
}

func FuzzReadSigned(f *testing.F) {
	f.Add([]byte{0, 0, 0, 2, '{', '}'})
	f.Add([]byte(`{"statement":"e30=","signature":"AA==","chain":["AA=="]}`))
	ca, err := trust.NewCA(trust.CAConfig{TrustDomain: spiffeid.RequireTrustDomainFromString("west.test")})
	if err != nil {
		f.Fatal(err)
	}
	id := spiffeid.RequireFromString("spiffe://west.test/strait/gateway/west")
	bundles := x509bundle.NewSet(ca.Bundle())
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ReadSigned(bytes.NewReader(b))
		if err != nil {
			return
		}
		// Nothing an attacker writes verifies without the CA's key.
		if _, err := Verify(s, bundles, VerifyOptions{Want: id, Nonce: []byte{1}}); err == nil {
			t.Fatal("a fuzzed statement verified")
		}
	})
}
