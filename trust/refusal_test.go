package trust

import (
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// refusalCase runs one handshake where the server must refuse the client,
// and checks the error type and the metric.
func expectServerRefusal(t *testing.T, res handshakeResult, m *Metrics, reason HandshakeFailureReason) {
	t.Helper()
	if res.serverErr == nil {
		t.Fatalf("server accepted the client (peer %s)", res.serverPeer)
	}
	if res.clientErr == nil {
		t.Errorf("client did not notice the refusal")
	}
	if got := ClassifyHandshakeError(res.serverErr); got != reason {
		t.Errorf("reason = %s, want %s (error: %v)", got, reason, res.serverErr)
	}
	if got := testutil.ToFloat64(m.handshakeFailures.WithLabelValues(string(reason))); got != 1 {
		t.Errorf("strait_trust_handshake_failures_total{reason=%q} = %v, want 1", reason, got)
	}
	t.Logf("refused: %v", res.serverErr)
}

func newMetrics(t *testing.T) *Metrics {
	t.Helper()
	m, err := NewMetrics(prometheus.NewPedanticRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestHandshakeAcceptedWithinAndAcrossDomains(t *testing.T) {
	caA, caB := newTestCA(t, "a.test", nil), newTestCA(t, "b.test", nil)
	storeA, storeB := newStore(t, caA, nil), newStore(t, caB, nil)
	federate(t, caA, 1, storeB)
	federate(t, caB, 1, storeA)
	serverID := "spiffe://b.test/ns/shop/sa/cart"
	server := side{svid: staticSVID{issue(t, caB, serverID)}, bundles: storeB}
	for _, client := range []string{"spiffe://a.test/ns/web/sa/front", "spiffe://b.test/ns/web/sa/front"} {
		ca, store := caA, storeA
		if client[9] == 'b' {
			ca, store = caB, storeB
		}
		res := handshake(t, server, side{svid: staticSVID{issue(t, ca, client)}, bundles: store,
			authorizer: AuthorizeID(id(t, serverID))})
		if res.serverErr != nil || res.clientErr != nil {
			t.Fatalf("%s: server: %v, client: %v", client, res.serverErr, res.clientErr)
		}
		if res.serverPeer.String() != client {
			t.Errorf("server saw %s, want %s", res.serverPeer, client)
		}
	}
}

func TestRefuseTrustDomainNotFederated(t *testing.T) {
	caB, caC := newTestCA(t, "b.test", nil), newTestCA(t, "c.test", nil)
	m := newMetrics(t)
	storeB, storeC := newStore(t, caB, m), newStore(t, caC, nil)
	federate(t, caB, 1, storeC) // c trusts b, b does not know c
	res := handshake(t,
		side{svid: staticSVID{issue(t, caB, "spiffe://b.test/ns/shop/sa/cart")}, bundles: storeB, metrics: m},
		side{svid: staticSVID{issue(t, caC, "spiffe://c.test/ns/web/sa/front")}, bundles: storeC})
	expectServerRefusal(t, res, m, ReasonUntrustedDomain)
	var unknown *UnknownTrustDomainError
	if !errors.As(res.serverErr, &unknown) || unknown.TrustDomain.Name() != "c.test" {
		t.Errorf("want *UnknownTrustDomainError for c.test, got %v", res.serverErr)
	}
}

func TestRefuseExpiredSVID(t *testing.T) {
	// The client's CA runs two hours behind: its one-hour SVID has expired.
	past := func() time.Time { return time.Now().Add(-2 * time.Hour) }
	caA := newTestCA(t, "a.test", past)
	caB := newTestCA(t, "b.test", nil)
	m := newMetrics(t)
	storeB := newStore(t, caB, m)
	storeA := newStore(t, caA, nil)
	federate(t, caA, 1, storeB)
	federate(t, caB, 1, storeA)
	res := handshake(t,
		side{svid: staticSVID{issue(t, caB, "spiffe://b.test/ns/shop/sa/cart")}, bundles: storeB, metrics: m},
		side{svid: staticSVID{issue(t, caA, "spiffe://a.test/ns/web/sa/front")}, bundles: storeA})
	expectServerRefusal(t, res, m, ReasonExpired)
	var invalid x509.CertificateInvalidError
	if !errors.As(res.serverErr, &invalid) || invalid.Reason != x509.Expired {
		t.Errorf("want x509.CertificateInvalidError{Reason: Expired}, got %v", res.serverErr)
	}
}

func TestRefuseExpiredSVIDByInjectedClock(t *testing.T) {
	// The same refusal with a valid SVID judged by a server clock two hours
	// ahead: verification follows TLSConfig.Now.
	caB := newTestCA(t, "b.test", nil)
	m := newMetrics(t)
	storeB := newStore(t, caB, m)
	later := func() time.Time { return time.Now().Add(2 * time.Hour) }
	res := handshake(t,
		side{svid: staticSVID{issue(t, caB, "spiffe://b.test/ns/shop/sa/cart")}, bundles: storeB, metrics: m, now: later},
		side{svid: staticSVID{issue(t, caB, "spiffe://b.test/ns/web/sa/front")}, bundles: storeB})
	expectServerRefusal(t, res, m, ReasonExpired)
}

// badLeafCase presents a certificate signed by the trusted CA but unfit to
// be an SVID.
func badLeafCase(t *testing.T, problem BadCertificateProblem, leafFor func(ca *CA) *staticSVID) {
	t.Helper()
	caB := newTestCA(t, "b.test", nil)
	m := newMetrics(t)
	storeB := newStore(t, caB, m)
	res := handshake(t,
		side{svid: staticSVID{issue(t, caB, "spiffe://b.test/ns/shop/sa/cart")}, bundles: storeB, metrics: m},
		side{svid: *leafFor(caB), bundles: storeB})
	expectServerRefusal(t, res, m, ReasonBadCertificate)
	var bad *BadCertificateError
	if !errors.As(res.serverErr, &bad) || bad.Problem != problem {
		t.Errorf("want *BadCertificateError{%q}, got %v", problem, res.serverErr)
	}
}

func TestRefuseTwoURISANs(t *testing.T) {
	// Consul CVE-2022-40716: a second URI SAN must not let a caller pick
	// the identity it is judged by.
	badLeafCase(t, ProblemManyURISANs, func(ca *CA) *staticSVID {
		cert, key := signLeaf(t, ca, leafTemplate("spiffe://b.test/ns/web/sa/front", "spiffe://b.test/ns/admin/sa/root"))
		return &staticSVID{rawSVID(key, cert)}
	})
}

func TestRefuseNoSPIFFEID(t *testing.T) {
	badLeafCase(t, ProblemNoSPIFFEID, func(ca *CA) *staticSVID {
		tmpl := leafTemplate()
		tmpl.DNSNames = []string{"front.web.svc"}
		cert, key := signLeaf(t, ca, tmpl)
		return &staticSVID{rawSVID(key, cert)}
	})
}

func TestRefuseCAAsLeaf(t *testing.T) {
	// The caller presents the trust domain's own root, key and all.
	badLeafCase(t, ProblemCAAsLeaf, func(ca *CA) *staticSVID {
		ca.mu.Lock()
		root := ca.roots[ca.active]
		ca.mu.Unlock()
		return &staticSVID{&x509svid.SVID{Certificates: []*x509.Certificate{root.cert}, PrivateKey: root.key}}
	})
}

func TestRefuseIntermediateCAAsLeaf(t *testing.T) {
	// An intermediate CA with a SPIFFE ID, signed by the trusted root.
	badLeafCase(t, ProblemCAAsLeaf, func(ca *CA) *staticSVID {
		tmpl := leafTemplate("spiffe://b.test/ns/web/sa/front")
		tmpl.IsCA = true
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		cert, key := signLeaf(t, ca, tmpl)
		return &staticSVID{rawSVID(key, cert)}
	})
}

func TestRefuseUnauthorizedConsumer(t *testing.T) {
	caA, caB := newTestCA(t, "a.test", nil), newTestCA(t, "b.test", nil)
	storeA, storeB := newStore(t, caA, nil), newStore(t, caB, nil)
	federate(t, caA, 1, storeB)
	federate(t, caB, 1, storeA)
	policy, err := NewConsumerPolicy(caB.TrustDomain(), []string{"spiffe://a.test/ns/web/sa/front"})
	if err != nil {
		t.Fatal(err)
	}
	m := newMetrics(t)
	server := side{svid: staticSVID{issue(t, caB, "spiffe://b.test/ns/shop/sa/cart")}, bundles: storeB,
		authorizer: policy.Authorizer(), metrics: m}

	ok := handshake(t, server, side{svid: staticSVID{issue(t, caA, "spiffe://a.test/ns/web/sa/front")}, bundles: storeA})
	if ok.serverErr != nil || ok.clientErr != nil {
		t.Fatalf("listed consumer refused: server %v, client %v", ok.serverErr, ok.clientErr)
	}
	res := handshake(t, server, side{svid: staticSVID{issue(t, caA, "spiffe://a.test/ns/web/sa/other")}, bundles: storeA})
	expectServerRefusal(t, res, m, ReasonUnauthorized)
	var unauthorized *UnauthorizedError
	if !errors.As(res.serverErr, &unauthorized) || unauthorized.ID.String() != "spiffe://a.test/ns/web/sa/other" {
		t.Errorf("want *UnauthorizedError for the caller, got %v", res.serverErr)
	}
}

func TestClientRefusesUnexpectedServer(t *testing.T) {
	caB := newTestCA(t, "b.test", nil)
	storeB := newStore(t, caB, nil)
	m := newMetrics(t)
	res := handshake(t,
		side{svid: staticSVID{issue(t, caB, "spiffe://b.test/ns/evil/sa/x")}, bundles: storeB},
		side{svid: staticSVID{issue(t, caB, "spiffe://b.test/ns/web/sa/front")}, bundles: storeB, metrics: m,
			authorizer: AuthorizeID(id(t, "spiffe://b.test/ns/shop/sa/cart"))})
	var unauthorized *UnauthorizedError
	if !errors.As(res.clientErr, &unauthorized) {
		t.Fatalf("want *UnauthorizedError on the client, got client %v, server %v", res.clientErr, res.serverErr)
	}
	if got := testutil.ToFloat64(m.handshakeFailures.WithLabelValues(string(ReasonUnauthorized))); got != 1 {
		t.Errorf("unauthorized failures = %v, want 1", got)
	}
}

func TestRefuseCrossDomainImpersonation(t *testing.T) {
	// b's CA signs an SVID claiming to be in c. The server trusts both b and
	// c, each with its own bundle: a pool of every root would accept it.
	caA, caB, caC := newTestCA(t, "a.test", nil), newTestCA(t, "b.test", nil), newTestCA(t, "c.test", nil)
	forged, key := signLeaf(t, caB, leafTemplate("spiffe://c.test/ns/web/sa/front"))
	forgedSVID := staticSVID{rawSVID(key, forged)}

	t.Run("c federated", func(t *testing.T) {
		m := newMetrics(t)
		storeA := newStore(t, caA, m)
		federate(t, caB, 1, storeA)
		federate(t, caC, 1, storeA)
		res := handshake(t,
			side{svid: staticSVID{issue(t, caA, "spiffe://a.test/ns/shop/sa/cart")}, bundles: storeA, metrics: m},
			side{svid: forgedSVID, bundles: storeA})
		expectServerRefusal(t, res, m, ReasonUntrustedDomain)
		var unknownCA x509.UnknownAuthorityError
		if !errors.As(res.serverErr, &unknownCA) {
			t.Errorf("want x509.UnknownAuthorityError, got %v", res.serverErr)
		}
	})
	t.Run("c not federated", func(t *testing.T) {
		m := newMetrics(t)
		storeA := newStore(t, caA, m)
		federate(t, caB, 1, storeA)
		res := handshake(t,
			side{svid: staticSVID{issue(t, caA, "spiffe://a.test/ns/shop/sa/cart")}, bundles: storeA, metrics: m},
			side{svid: forgedSVID, bundles: storeA})
		expectServerRefusal(t, res, m, ReasonUntrustedDomain)
		var unknown *UnknownTrustDomainError
		if !errors.As(res.serverErr, &unknown) {
			t.Errorf("want *UnknownTrustDomainError, got %v", res.serverErr)
		}
	})
	t.Run("pooled roots would accept", func(t *testing.T) {
		// The control: the same forged certificate verifies against a pool
		// of b's and c's roots, which is why bundles are never pooled.
		pool := x509.NewCertPool()
		pool.AddCert(caB.ActiveRoot())
		pool.AddCert(caC.ActiveRoot())
		if _, err := forged.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			t.Fatalf("control failed: pooled verification refused the forgery too: %v", err)
		}
	})
}

func TestConfigValidation(t *testing.T) {
	_, err := ServerTLSConfig(TLSConfig{})
	if err == nil {
		t.Fatal("empty TLSConfig accepted")
	}
	t.Log(err)
	_, err = ClientTLSConfig(TLSConfig{SVID: staticSVID{}, Bundles: newTestCA(t, "a.test", nil), Authorizer: tlsconfig.AuthorizeAny()})
	if err != nil {
		t.Fatal(err)
	}
}

func TestRefuseNonSPIFFEURI(t *testing.T) {
	badLeafCase(t, ProblemInvalidSPIFFEID, func(ca *CA) *staticSVID {
		cert, key := signLeaf(t, ca, leafTemplate("https://b.test/ns/web/sa/front"))
		return &staticSVID{rawSVID(key, cert)}
	})
}

func TestRefuseLeafWithSigningKeyUsage(t *testing.T) {
	// Key usage is checked, not just the CA flag.
	badLeafCase(t, ProblemSigningKeyUsage, func(ca *CA) *staticSVID {
		tmpl := leafTemplate("spiffe://b.test/ns/web/sa/front")
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign
		cert, key := signLeaf(t, ca, tmpl)
		return &staticSVID{rawSVID(key, cert)}
	})
}

func TestRefuseClientCertWithServerOnlyUsage(t *testing.T) {
	// Envoy CVE-2022-21657: a certificate issued for servers only must not
	// authenticate a client.
	badLeafCase(t, ProblemExtKeyUsage, func(ca *CA) *staticSVID {
		tmpl := leafTemplate("spiffe://b.test/ns/web/sa/front")
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		cert, key := signLeaf(t, ca, tmpl)
		return &staticSVID{rawSVID(key, cert)}
	})
}

func TestAcceptLeafWithoutExtKeyUsage(t *testing.T) {
	caB := newTestCA(t, "b.test", nil)
	storeB := newStore(t, caB, nil)
	tmpl := leafTemplate("spiffe://b.test/ns/web/sa/front")
	tmpl.ExtKeyUsage = nil
	cert, key := signLeaf(t, caB, tmpl)
	res := handshake(t,
		side{svid: staticSVID{issue(t, caB, "spiffe://b.test/ns/shop/sa/cart")}, bundles: storeB},
		side{svid: staticSVID{rawSVID(key, cert)}, bundles: storeB})
	if res.serverErr != nil || res.clientErr != nil {
		t.Fatalf("server %v, client %v", res.serverErr, res.clientErr)
	}
}

func TestClientRefusesServerCertWithClientOnlyUsage(t *testing.T) {
	caB := newTestCA(t, "b.test", nil)
	storeB := newStore(t, caB, nil)
	tmpl := leafTemplate("spiffe://b.test/ns/shop/sa/cart")
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	cert, key := signLeaf(t, caB, tmpl)
	res := handshake(t,
		side{svid: staticSVID{rawSVID(key, cert)}, bundles: storeB},
		side{svid: staticSVID{issue(t, caB, "spiffe://b.test/ns/web/sa/front")}, bundles: storeB})
	var bad *BadCertificateError
	if !errors.As(res.clientErr, &bad) || bad.Problem != ProblemExtKeyUsage {
		t.Fatalf("client: got %v, want *BadCertificateError{%q}", res.clientErr, ProblemExtKeyUsage)
	}
}
