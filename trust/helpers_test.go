package trust

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

func td(t testing.TB, name string) spiffeid.TrustDomain {
	t.Helper()
	d, err := spiffeid.TrustDomainFromString(name)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func id(t testing.TB, s string) spiffeid.ID {
	t.Helper()
	i, err := spiffeid.FromString(s)
	if err != nil {
		t.Fatal(err)
	}
	return i
}

func newTestCA(t testing.TB, name string, now func() time.Time) *CA {
	t.Helper()
	ca, err := NewCA(CAConfig{TrustDomain: td(t, name), Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func issue(t testing.TB, ca *CA, s string) *x509svid.SVID {
	t.Helper()
	svid, err := ca.IssueX509SVID(id(t, s), 0)
	if err != nil {
		t.Fatal(err)
	}
	return svid
}

// staticSVID is an x509svid.Source that always returns one SVID, however
// bad it is: the tests present certificates the CA would never sign.
type staticSVID struct{ svid *x509svid.SVID }

func (s staticSVID) GetX509SVID() (*x509svid.SVID, error) { return s.svid, nil }

// rawSVID wraps arbitrary certificates and key as an SVID without the checks
// of x509svid.
func rawSVID(key *ecdsa.PrivateKey, certs ...*x509.Certificate) *x509svid.SVID {
	return &x509svid.SVID{Certificates: certs, PrivateKey: key}
}

// signLeaf makes a leaf from tmpl signed by the CA's active root, bypassing
// IssueX509SVID: the way a compromised or buggy CA would.
func signLeaf(t testing.TB, ca *CA, tmpl *x509.Certificate) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	ca.mu.Lock()
	root := ca.roots[ca.active]
	ca.mu.Unlock()
	return signWith(t, root.cert, root.key.(*ecdsa.PrivateKey), tmpl)
}

func signWith(t testing.TB, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, tmpl *x509.Certificate) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if tmpl.SerialNumber == nil {
		tmpl.SerialNumber = randomSerial()
	}
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore = time.Now().Add(-time.Minute)
		tmpl.NotAfter = time.Now().Add(time.Hour)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func leafTemplate(uris ...string) *x509.Certificate {
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{Organization: []string{"test"}},
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	for _, u := range uris {
		parsed, err := url.Parse(u)
		if err != nil {
			panic(err)
		}
		tmpl.URIs = append(tmpl.URIs, parsed)
	}
	return tmpl
}

// side is one end of a test connection.
type side struct {
	svid       x509svid.Source
	bundles    x509bundle.Source
	authorizer tlsconfig.Authorizer
	now        func() time.Time
	metrics    *Metrics
}

func (s side) config() TLSConfig {
	a := s.authorizer
	if a == nil {
		a = tlsconfig.AuthorizeAny()
	}
	return TLSConfig{SVID: s.svid, Bundles: s.bundles, Authorizer: a, Now: s.now, Metrics: s.metrics}
}

// handshakeResult is what each end of a handshake saw.
type handshakeResult struct {
	serverErr, clientErr error
	serverPeer           spiffeid.ID
}

// handshake runs a real TLS handshake over loopback TCP, then one byte each
// way so that a refusal by the server (which in TLS 1.3 happens after the
// client has finished) reaches the client too.
func handshake(t testing.TB, server, client side) handshakeResult {
	t.Helper()
	sconf, err := ServerTLSConfig(server.config())
	if err != nil {
		t.Fatal(err)
	}
	cconf, err := ClientTLSConfig(client.config())
	if err != nil {
		t.Fatal(err)
	}
	sc, cc := tcpPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv, cli := tls.Server(sc, sconf), tls.Client(cc, cconf)
	var res handshakeResult
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer srv.Close()
		if res.serverErr = srv.HandshakeContext(ctx); res.serverErr != nil {
			return
		}
		res.serverPeer, _ = PeerID(srv.ConnectionState())
		buf := make([]byte, 1)
		if _, err := srv.Read(buf); err != nil {
			return
		}
		_, _ = srv.Write(buf)
	}()
	func() {
		defer cli.Close()
		if res.clientErr = cli.HandshakeContext(ctx); res.clientErr != nil {
			return
		}
		if _, err := cli.Write([]byte{1}); err != nil {
			res.clientErr = err
			return
		}
		if _, err := cli.Read(make([]byte, 1)); err != nil {
			res.clientErr = err
		}
	}()
	<-done
	return res
}

// newStore makes a bundle store for ca's trust domain, with ca as the
// local source.
func newStore(t testing.TB, ca *CA, m *Metrics, federates ...spiffeid.TrustDomain) *BundleStore {
	t.Helper()
	s, err := NewBundleStore(BundleStoreConfig{TrustDomain: ca.TrustDomain(), Local: ca, Federates: federates, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// federate applies ca's current bundle to each store with sequence seq.
func federate(t testing.TB, ca *CA, seq uint64, stores ...*BundleStore) {
	t.Helper()
	for _, s := range stores {
		if err := s.Apply(ca.TrustBundle(seq, time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
}

// tcpPair returns both ends of a loopback TCP connection. Unlike net.Pipe,
// TCP buffers, so an alert written while the peer writes does not deadlock.
func tcpPair(t testing.TB) (server, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	return server, client
}
