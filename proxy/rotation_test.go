package proxy

import (
	"crypto/tls"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// rotatingSource is an x509svid.Source whose SVID can be replaced.
type rotatingSource struct{ cur atomic.Pointer[x509svid.SVID] }

func (r *rotatingSource) GetX509SVID() (*x509svid.SVID, error) { return r.cur.Load(), nil }

// TestSVIDRotation: a new SVID is used for new handshakes and an open
// connection survives the rotation on both sides.
func TestSVIDRotation(t *testing.T) {
	w := newWorld(t)
	w.reg.setBase(gateway(west, "gw1", ""))
	serverSVIDs, clientSVIDs := &rotatingSource{}, &rotatingSource{}
	serverSVIDs.cur.Store(w.svid(west, "echo"))
	clientSVIDs.cur.Store(w.svid(west, "client"))
	server, _ := w.serverProxy(west, "echo-1", func(c *Config) { c.SVIDs = serverSVIDs })
	client := w.run(Config{Cluster: west, ServiceAccount: "client", SVIDs: clientSVIDs,
		Upstreams: []Upstream{{Service: echoKey, Port: 9000, ListenAddr: "127.0.0.1:0"}}})

	open := openThrough(t, client)
	first := serverSerial(t, server, clientSVIDs)

	serverSVIDs.cur.Store(w.svid(west, "echo"))
	clientSVIDs.cur.Store(w.svid(west, "client"))
	echoOnce(t, open, "after rotation") // the old connection still works

	second := serverSerial(t, server, clientSVIDs)
	if first == second {
		t.Errorf("new handshake presented the old certificate (serial %s)", first)
	}
	if got, err := roundTrip(t, client, []byte("new")); err != nil || string(got) != "new" {
		t.Errorf("new connection after rotation = %q, %v", got, err)
	}
	_ = open.SetDeadline(time.Now().Add(5 * time.Second))
	_ = open.(*net.TCPConn).CloseWrite()
}

// serverSerial handshakes with a proxy's inbound listener as caller and
// returns the serial number of the certificate the server presented.
func serverSerial(t *testing.T, p *Proxy, caller x509svid.Source) string {
	t.Helper()
	cfg := tlsconfig.MTLSClientConfig(caller, p.cfg.Bundles, tlsconfig.AuthorizeAny())
	cfg.ServerName = "9000.echo.default.west.strait"
	c, err := tls.Dial("tcp", p.InboundAddr().String(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
}
