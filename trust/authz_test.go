package trust

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func TestConsumerPolicy(t *testing.T) {
	owner := td(t, "b.test")
	p, err := NewConsumerPolicy(owner, []string{"spiffe://a.test/ns/web/sa/front", "spiffe://c.test", "spiffe://d.test/"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		id          string
		allowed, td bool
	}{
		{"spiffe://b.test/ns/any/sa/thing", true, true}, // the exporting domain
		{"spiffe://a.test/ns/web/sa/front", true, true}, // listed ID
		{"spiffe://a.test/ns/web/sa/other", false, true},
		{"spiffe://a.test/ns/web/sa/front/x", false, true}, // no prefix match
		{"spiffe://c.test/ns/x/sa/y", true, true},          // whole domain
		{"spiffe://d.test/ns/x/sa/y", true, true},          // trailing slash form
		{"spiffe://e.test/ns/web/sa/front", false, false},
	} {
		id := id(t, tc.id)
		if got := p.Allows(id); got != tc.allowed {
			t.Errorf("Allows(%s) = %v, want %v", id, got, tc.allowed)
		}
		if got := p.AllowsTrustDomain(id.TrustDomain()); got != tc.td {
			t.Errorf("AllowsTrustDomain(%s) = %v, want %v", id.TrustDomain(), got, tc.td)
		}
		err := p.Authorizer()(id, nil)
		var unauthorized *UnauthorizedError
		if tc.allowed != (err == nil) || (err != nil && !errors.As(err, &unauthorized)) {
			t.Errorf("Authorizer(%s) = %v", id, err)
		}
	}
	if err := p.CheckTrustDomain(id(t, "spiffe://e.test/x")); ClassifyHandshakeError(err) != ReasonUnauthorized {
		t.Errorf("CheckTrustDomain: %v", err)
	}
}

func TestConsumerPolicyEmptyAllowsOnlyOwner(t *testing.T) {
	p, err := NewConsumerPolicy(td(t, "b.test"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Allows(id(t, "spiffe://b.test/x")) || p.Allows(id(t, "spiffe://a.test/x")) || p.AllowsTrustDomain(td(t, "a.test")) {
		t.Fatal("an empty consumer list must allow the owner's domain only")
	}
	var nilPolicy *ConsumerPolicy
	if nilPolicy.Allows(id(t, "spiffe://b.test/x")) {
		t.Fatal("a nil policy allows")
	}
}

func TestConsumerPolicyReportsEveryBadEntry(t *testing.T) {
	_, err := NewConsumerPolicy(spiffeid.TrustDomain{}, []string{"https://a.test/x", "spiffe://A_B/x", "not a URI"})
	if err == nil {
		t.Fatal("bad entries accepted")
	}
	for _, want := range []string{"owner", "consumers[0]", "consumers[1]", "consumers[2]"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %s: %v", want, err)
		}
	}
}

func TestAuthorizeTrustDomains(t *testing.T) {
	authorize := AuthorizeTrustDomains(td(t, "a.test"), td(t, "b.test"))
	if err := authorize(id(t, "spiffe://a.test/strait/gateway/east"), nil); err != nil {
		t.Fatal(err)
	}
	var unauthorized *UnauthorizedError
	if err := authorize(id(t, "spiffe://c.test/strait/gateway/x"), nil); !errors.As(err, &unauthorized) {
		t.Fatalf("got %v, want *UnauthorizedError", err)
	}
}

func TestClassifyHandshakeError(t *testing.T) {
	leaf := &x509.Certificate{}
	for _, tc := range []struct {
		err  error
		want HandshakeFailureReason
	}{
		{nil, ReasonOther},
		{errors.New("x509: certificate has expired"), ReasonOther}, // text never counts
		{fmt.Errorf("wrapped: %w", x509.CertificateInvalidError{Cert: leaf, Reason: x509.Expired}), ReasonExpired},
		{x509.CertificateInvalidError{Cert: leaf, Reason: x509.NotAuthorizedToSign}, ReasonBadCertificate},
		{fmt.Errorf("x509svid: %w", x509.UnknownAuthorityError{Cert: leaf}), ReasonUntrustedDomain},
		{fmt.Errorf("a: %w", &UnknownTrustDomainError{TrustDomain: td(t, "c.test")}), ReasonUntrustedDomain},
		{&BadCertificateError{Problem: ProblemManyURISANs}, ReasonBadCertificate},
		{&UnauthorizedError{ID: id(t, "spiffe://a.test/x")}, ReasonUnauthorized},
		{tls.AlertError(42), ReasonOther}, // the peer refused us
		{ErrNotReady, ReasonOther},
	} {
		if got := ClassifyHandshakeError(tc.err); got != tc.want {
			t.Errorf("%v: got %s, want %s", tc.err, got, tc.want)
		}
	}
}

func TestNoSessionResumption(t *testing.T) {
	// CVE-2022-21654: a resumed session skips certificate verification, so a
	// bundle change would not apply to it. The server issues no tickets, so
	// even a client with a session cache never resumes.
	caB := newTestCA(t, "b.test", nil)
	storeB := newStore(t, caB, nil)
	sconf, err := ServerTLSConfig(side{svid: staticSVID{issue(t, caB, "spiffe://b.test/s")}, bundles: storeB}.config())
	if err != nil {
		t.Fatal(err)
	}
	cconf, err := ClientTLSConfig(side{svid: staticSVID{issue(t, caB, "spiffe://b.test/c")}, bundles: storeB}.config())
	if err != nil {
		t.Fatal(err)
	}
	if sconf.MinVersion != tls.VersionTLS13 || cconf.MinVersion != tls.VersionTLS13 || !sconf.SessionTicketsDisabled {
		t.Fatal("configs must be TLS 1.3 only without session tickets")
	}
	// A caller that adds a session cache and a server name (the cache key)
	// still never resumes: the server issues no tickets.
	cconf.ServerName = "cart.shop.b.test"
	cconf.ClientSessionCache = tls.NewLRUClientSessionCache(8)
	cconf.SessionTicketsDisabled = false
	if n := resumptions(t, sconf, cconf, 3); n != 0 {
		t.Fatalf("%d of 3 connections resumed a session", n)
	}
	// The control: with tickets enabled on the server the same client
	// resumes, so the check above can fail.
	control := sconf.Clone()
	control.SessionTicketsDisabled = false
	cconf.ClientSessionCache = tls.NewLRUClientSessionCache(8)
	n := resumptions(t, control, cconf, 3)
	if n == 0 {
		t.Fatal("control: no resumption even with session tickets")
	}
	t.Logf("control with tickets: %d of 3 connections resumed", n)
}

// resumptions makes n connections and counts those that resumed.
func resumptions(t *testing.T, sconf, cconf *tls.Config, n int) int {
	t.Helper()
	resumed := 0
	for range n {
		sc, cc := tcpPair(t)
		srv, cli := tls.Server(sc, sconf), tls.Client(cc, cconf)
		done := make(chan error, 1)
		go func() {
			err := srv.Handshake()
			if err == nil {
				// Write so that post-handshake messages (tickets) flow.
				_, err = srv.Write([]byte{1})
			}
			done <- err
		}()
		if err := cli.Handshake(); err != nil {
			t.Fatal(err)
		}
		if _, err := cli.Read(make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if cli.ConnectionState().DidResume {
			resumed++
		}
		srv.Close()
		cli.Close()
	}
	return resumed
}

func TestResumedSessionIsVerifiedAgain(t *testing.T) {
	// Even with session tickets turned back on by a caller, a resumed
	// session is checked against the bundles of the moment: once b.test
	// stops trusting a.test, a.test cannot resume its way in.
	caA, caB := newTestCA(t, "a.test", nil), newTestCA(t, "b.test", nil)
	m := newMetrics(t)
	storeA, storeB := newStore(t, caA, nil), newStore(t, caB, m)
	federate(t, caA, 1, storeB)
	federate(t, caB, 1, storeA)
	sconf, err := ServerTLSConfig(side{svid: staticSVID{issue(t, caB, "spiffe://b.test/s")}, bundles: storeB, metrics: m}.config())
	if err != nil {
		t.Fatal(err)
	}
	cconf, err := ClientTLSConfig(side{svid: staticSVID{issue(t, caA, "spiffe://a.test/c")}, bundles: storeA}.config())
	if err != nil {
		t.Fatal(err)
	}
	sconf.SessionTicketsDisabled = false
	cconf.SessionTicketsDisabled = false
	cconf.ServerName = "cart.shop.b.test"
	cconf.ClientSessionCache = tls.NewLRUClientSessionCache(8)
	if n := resumptions(t, sconf, cconf, 2); n != 1 {
		t.Fatalf("%d of 2 connections resumed, want 1 (the setup must resume)", n)
	}
	if err := storeB.Sync(nil); err != nil { // a.test's bundle is withdrawn
		t.Fatal(err)
	}
	sc, cc := tcpPair(t)
	srv, cli := tls.Server(sc, sconf), tls.Client(cc, cconf)
	defer srv.Close()
	defer cli.Close()
	go func() { _ = cli.Handshake(); _, _ = cli.Read(make([]byte, 1)) }()
	err = srv.Handshake()
	var unknown *UnknownTrustDomainError
	if !errors.As(err, &unknown) {
		t.Fatalf("resumed handshake after the bundle was withdrawn: got %v, want *UnknownTrustDomainError", err)
	}
	t.Logf("refused: %v", err)
}

func TestPeerExpiry(t *testing.T) {
	caB := newTestCA(t, "b.test", nil)
	storeB := newStore(t, caB, nil)
	client := issue(t, caB, "spiffe://b.test/c")
	sconf, err := ServerTLSConfig(side{svid: staticSVID{issue(t, caB, "spiffe://b.test/s")}, bundles: storeB}.config())
	if err != nil {
		t.Fatal(err)
	}
	cconf, err := ClientTLSConfig(side{svid: staticSVID{client}, bundles: storeB}.config())
	if err != nil {
		t.Fatal(err)
	}
	sc, cc := tcpPair(t)
	srv, cli := tls.Server(sc, sconf), tls.Client(cc, cconf)
	defer srv.Close()
	defer cli.Close()
	go func() { _ = cli.Handshake() }()
	if err := srv.Handshake(); err != nil {
		t.Fatal(err)
	}
	if got, want := PeerExpiry(srv.ConnectionState()), client.Certificates[0].NotAfter; !got.Equal(want) {
		t.Fatalf("PeerExpiry = %s, want %s", got, want)
	}
	if !PeerExpiry(tls.ConnectionState{}).IsZero() {
		t.Fatal("no peer certificates: want the zero time")
	}
}

// TestAuthorizeServer: a client that expects a given server refuses
// another identity of the same trust domain with *UnexpectedServerError,
// counted as unexpected_server, and accepts the expected one.
func TestAuthorizeServer(t *testing.T) {
	caB := newTestCA(t, "b.test", nil)
	storeB := newStore(t, caB, nil)
	want := id(t, "spiffe://b.test/ns/shop/sa/cart")
	notCart := errors.New("not cart")
	expect := AuthorizeServer(func(got spiffeid.ID) error {
		if got != want {
			return notCart
		}
		return nil
	})
	for _, tc := range []struct {
		server string
		ok     bool
	}{
		{"spiffe://b.test/ns/shop/sa/cart", true},
		{"spiffe://b.test/ns/shop/sa/other", false},
		{"spiffe://b.test/ns/evil/sa/cart", false},
	} {
		m := newMetrics(t)
		res := handshake(t,
			side{svid: staticSVID{issue(t, caB, tc.server)}, bundles: storeB},
			side{svid: staticSVID{issue(t, caB, "spiffe://b.test/ns/web/sa/front")}, bundles: storeB, metrics: m, authorizer: expect})
		failures := testutil.ToFloat64(m.handshakeFailures.WithLabelValues(string(ReasonUnexpectedServer)))
		if tc.ok {
			if res.clientErr != nil || failures != 0 {
				t.Errorf("%s: client %v, %v failures counted", tc.server, res.clientErr, failures)
			}
			continue
		}
		var use *UnexpectedServerError
		if !errors.As(res.clientErr, &use) || use.ID.String() != tc.server || !errors.Is(res.clientErr, notCart) {
			t.Errorf("%s: client error %v, want *UnexpectedServerError for it wrapping the matcher's error", tc.server, res.clientErr)
		}
		if got := ClassifyHandshakeError(res.clientErr); got != ReasonUnexpectedServer {
			t.Errorf("%s: classified %s", tc.server, got)
		}
		if failures != 1 {
			t.Errorf("%s: unexpected_server failures = %v, want 1", tc.server, failures)
		}
	}
}
