package trust

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// A certificate judged before its NotBefore is not_yet_valid, not expired,
// and the refusal names the identity the peer claimed.
func TestRefuseNotYetValidSVID(t *testing.T) {
	tests := []struct {
		name       string
		serverTime func() time.Time
		want       HandshakeFailureReason
	}{
		{"server clock two hours behind", func() time.Time { return time.Now().Add(-2 * time.Hour) }, ReasonNotYetValid},
		{"server clock two hours ahead", func() time.Time { return time.Now().Add(2 * time.Hour) }, ReasonExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			caB := newTestCA(t, "b.test", nil)
			m := newMetrics(t)
			storeB := newStore(t, caB, m)
			const client = "spiffe://b.test/ns/web/sa/front"
			res := handshake(t,
				side{svid: staticSVID{issue(t, caB, "spiffe://b.test/ns/shop/sa/cart")}, bundles: storeB, metrics: m, now: tt.serverTime},
				side{svid: staticSVID{issue(t, caB, client)}, bundles: storeB})
			expectServerRefusal(t, res, m, tt.want)
			for _, r := range HandshakeFailureReasons() {
				if r == tt.want {
					continue
				}
				if got := testutil.ToFloat64(m.handshakeFailures.WithLabelValues(string(r))); got != 0 {
					t.Errorf("strait_trust_handshake_failures_total{reason=%q} = %v, want 0", r, got)
				}
			}
			var refused *PeerRefusedError
			if !errors.As(res.serverErr, &refused) {
				t.Fatalf("server error %v is not a *PeerRefusedError", res.serverErr)
			}
			if refused.ID.String() != client || refused.Reason != tt.want {
				t.Errorf("refusal names %q for %s, want %q for %s", refused.ID, refused.Reason, client, tt.want)
			}
		})
	}
}

// A certificate outside its validity period is not_yet_valid before it and
// expired after it, judged by the verification clock.
func TestClassifyValidity(t *testing.T) {
	ca := newTestCA(t, "b.test", nil)
	chain := issue(t, ca, "spiffe://b.test/ns/web/sa/front").Certificates
	leaf := chain[0]
	store := newStore(t, ca, nil)
	for _, tt := range []struct {
		at   time.Time
		want HandshakeFailureReason
	}{
		{leaf.NotBefore.Add(-time.Hour), ReasonNotYetValid},
		{leaf.NotAfter.Add(time.Hour), ReasonExpired},
	} {
		err := verifyPeer(chain, x509.ExtKeyUsageClientAuth, store, AuthorizeTrustDomains(ca.TrustDomain()), tt.at)
		if err == nil {
			t.Fatalf("verified at %v", tt.at)
		}
		if got := classifyAt(err, tt.at); got != tt.want {
			t.Errorf("at %v: classifyAt = %s, want %s", tt.at, got, tt.want)
		}
	}
}

// Both sides of a default configuration negotiate the hybrid
// post-quantum key exchange X25519MLKEM768, and ObserveTLSHandshake counts
// it under its layer, group and cipher suite.
func TestTLSHandshakeMetric(t *testing.T) {
	ca := newTestCA(t, "b.test", nil)
	store := newStore(t, ca, nil)
	m := newMetrics(t)
	sconf, err := ServerTLSConfig(side{svid: staticSVID{issue(t, ca, "spiffe://b.test/ns/shop/sa/cart")}, bundles: store}.config())
	if err != nil {
		t.Fatal(err)
	}
	cconf, err := ClientTLSConfig(side{svid: staticSVID{issue(t, ca, "spiffe://b.test/ns/web/sa/front")}, bundles: store}.config())
	if err != nil {
		t.Fatal(err)
	}
	sc, cc := tcpPair(t)
	srv, cli := tls.Server(sc, sconf), tls.Client(cc, cconf)
	errc := make(chan error, 1)
	go func() { errc <- srv.Handshake() }()
	if err := cli.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	state := srv.ConnectionState()
	if state.CurveID != tls.X25519MLKEM768 {
		t.Errorf("negotiated %v, want X25519MLKEM768", state.CurveID)
	}
	m.ObserveTLSHandshake(LayerInner, state)
	cipher := tls.CipherSuiteName(state.CipherSuite)
	if got := testutil.ToFloat64(m.tlsHandshakes.WithLabelValues("inner", "X25519MLKEM768", cipher)); got != 1 {
		t.Errorf("strait_tls_handshakes_total{layer=inner,group=X25519MLKEM768,cipher=%s} = %v, want 1", cipher, got)
	}
}
