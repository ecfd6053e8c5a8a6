package proxy

import (
	"context"
	"errors"
	"fmt"
	"github.com/strait-mesh/strait/internal/demo"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
	"github.com/strait-mesh/strait/proxy/session"
)

// sessionsMode sets a proxy's session mode.
func sessionsMode(m SessionMode) func(*Config) { return func(c *Config) { c.Sessions = m } }

// metricValue sums the samples of a gauge, counter or histogram (its
// sample count) named name in p's registry whose labels include labels.
func metricValue(t testing.TB, p *Proxy, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := p.cfg.Metrics.(prometheus.Gatherer).Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for k, v := range labels {
				if !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool { return l.GetName() == k && l.GetValue() == v }) {
					continue metric
				}
			}
			switch {
			case m.GetGauge() != nil:
				sum += m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				sum += m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				sum += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return sum
}

// sessionClient runs a client-only proxy of cluster with upstreams to
// echo.default on 9000 and 9001 (pinned to pin, if set).
func (w *world) sessionClient(cluster string, svids x509svid.Source, pin string, mutate ...func(*Config)) *Proxy {
	w.t.Helper()
	cfg := Config{
		Cluster: cluster, ServiceAccount: "client",
		Upstreams: []Upstream{
			{Service: echoKey, Port: 9000, Cluster: pin, ListenAddr: "127.0.0.1:0"},
			{Service: echoKey, Port: 9001, Cluster: pin, ListenAddr: "127.0.0.1:0"},
		},
		SVIDs: svids,
	}
	for _, m := range mutate {
		m(&cfg)
	}
	return w.run(cfg)
}

// TestSessionModes: every pairing of session modes carries connections,
// locally and through a gateway, and the destination's application learns
// the caller's SPIFFE ID; only where both sides have sessions is there one
// session (one inner handshake, one connection through the gateway) for
// every connection. Mixed versions keep working in both directions.
func TestSessionModes(t *testing.T) {
	const conns = 12
	for _, path := range []string{pathLocal, pathGateway} {
		for _, tt := range []struct {
			client, server SessionMode
		}{{SessionsOn, SessionsOn}, {SessionsOn, SessionsOff}, {SessionsOff, SessionsOn}, {SessionsOff, SessionsOff}} {
			both := tt.client == SessionsOn && tt.server == SessionsOn
			t.Run(fmt.Sprintf("%s/client-%v-server-%v", path, tt.client == SessionsOn, tt.server == SessionsOn), func(t *testing.T) {
				w := newWorld(t)
				gw := passthroughGateway(t)
				var server *Proxy
				var app interface{ SPIFFEIDs() []string }
				var client *Proxy
				if path == pathLocal {
					w.reg.setBase(gateway(west, "gw1", ""), export(west))
					server, app = w.serverProxy(west, "echo-1", sessionsMode(tt.server))
					client = w.sessionClient(west, w.svid(west, "client"), "", sessionsMode(tt.client))
				} else {
					w.reg.setBase(gateway(west, "gw1", gw.Addr()), gateway(east, "gw1", ""), export(east, "spiffe://"+westTD))
					server, app = w.serverProxy(east, "echo-east", sessionsMode(tt.server))
					gw.forwardTo(server.InboundAddr().String())
					client = w.sessionClient(west, w.svid(west, "client"), east, sessionsMode(tt.client))
				}
				for i := range conns {
					msg := fmt.Sprintf("ping %d", i)
					if got, err := roundTrip(t, client, []byte(msg)); err != nil || string(got) != msg {
						t.Fatalf("connection %d: round trip = %q, %v", i, got, err)
					}
				}
				ids := app.SPIFFEIDs()
				want := "spiffe://" + westTD + "/ns/default/sa/client"
				if len(ids) != conns || slices.ContainsFunc(ids, func(id string) bool { return id != want }) {
					t.Errorf("app saw callers %v, want %d times %s", ids, conns, want)
				}
				wantSessions, wantHandshakes := 0.0, float64(conns)
				if both {
					wantSessions, wantHandshakes = 1, 1
				}
				if got := metricValue(t, client, "strait_proxy_session_setup_seconds", nil); got != wantSessions {
					t.Errorf("client opened %v sessions, want %v", got, wantSessions)
				}
				if got := metricValue(t, server, "strait_proxy_sessions_open", map[string]string{"side": session.SideServer}); got != wantSessions {
					t.Errorf("server has %v sessions open, want %v", got, wantSessions)
				}
				if path == pathGateway {
					if got := float64(gw.accepted.Load()); got != wantHandshakes {
						t.Errorf("gateway carried %v connections, want %v", got, wantHandshakes)
					}
				}
				eventually(t, 5*time.Second, "server to count every inbound connection", func() bool {
					return metricValue(t, server, "strait_proxy_connections_total", map[string]string{"direction": dirInbound, "result": resultOK}) == conns
				})
			})
		}
	}
}

// swapSVIDs is an SVID source whose SVID the test replaces.
type swapSVIDs struct {
	mu   sync.Mutex
	svid *x509svid.SVID
}

func (s *swapSVIDs) set(v *x509svid.SVID) { s.mu.Lock(); s.svid = v; s.mu.Unlock() }
func (s *swapSVIDs) GetX509SVID() (*x509svid.SVID, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.svid, nil
}

// TestSessionCarriesOnlyItsCaller: a session never carries a stream for a
// caller other than the identity that made its handshake. When the
// proxy's identity changes, the next connection opens a new session, and
// the destination's application learns the new identity for it and the
// old one for none of the later connections.
func TestSessionCarriesOnlyItsCaller(t *testing.T) {
	w := newWorld(t)
	gw := passthroughGateway(t)
	w.reg.setBase(gateway(west, "gw1", gw.Addr()), gateway(east, "gw1", ""), export(east, "spiffe://"+westTD))
	server, app := w.serverProxy(east, "echo-east", sessionsMode(SessionsOn))
	gw.forwardTo(server.InboundAddr().String())
	svids := &swapSVIDs{svid: w.svid(west, "alice")}
	client := w.sessionClient(west, svids, east, sessionsMode(SessionsOn))

	alice, bob := "spiffe://"+westTD+"/ns/default/sa/alice", "spiffe://"+westTD+"/ns/default/sa/bob"
	var want []string
	for round, who := range []string{"alice", "bob", "alice"} {
		svids.set(w.svid(west, who))
		for i := range 4 {
			msg := fmt.Sprintf("%s %d", who, i)
			if got, err := roundTrip(t, client, []byte(msg)); err != nil || string(got) != msg {
				t.Fatalf("round %d (%s), connection %d: round trip = %q, %v", round, who, i, got, err)
			}
			want = append(want, map[string]string{"alice": alice, "bob": bob}[who])
		}
	}
	if got := app.SPIFFEIDs(); !slices.Equal(got, want) {
		t.Errorf("app saw callers\n%v\nwant\n%v", got, want)
	}
	// alice's session, bob's, and alice's again (her first session is
	// still open, but under another certificate: the third round reuses
	// it or opens another, never bob's).
	if got := gw.accepted.Load(); got < 2 || got > 3 {
		t.Errorf("gateway carried %d sessions, want 2 or 3 (one per identity, at most one more)", got)
	}
}

// TestSessionStreamAuthorized: the destination authorizes every stream,
// not only the session's handshake: a caller whose trust domain the
// export stops listing is refused on the session it already has, with
// UNAUTHORIZED, and a port the service does not serve is refused with
// NOT_EXPORTED; neither reaches the application.
func TestSessionStreamAuthorized(t *testing.T) {
	w := newWorld(t)
	gw := passthroughGateway(t)
	base := func(consumers ...string) {
		w.reg.setBase(gateway(west, "gw1", gw.Addr()), gateway(east, "gw1", ""), export(east, consumers...))
	}
	base("spiffe://" + westTD)
	server, app := w.serverProxy(east, "echo-east", sessionsMode(SessionsOn))
	gw.forwardTo(server.InboundAddr().String())
	client := w.sessionClient(west, w.svid(west, "client"), east, sessionsMode(SessionsOn))

	if got, err := roundTrip(t, client, []byte("ping")); err != nil || string(got) != "ping" {
		t.Fatalf("round trip = %q, %v", got, err)
	}
	// Port 9001 on the same session: refused, the app sees nothing.
	if got, _ := roundTripVia(t, client.UpstreamAddr(1), []byte("ping")); len(got) != 0 {
		t.Errorf("port 9001: got %q, want a refusal", got)
	}
	err := openAndRead(t, client, 1)
	checkStreamRefusal(t, err, straitv1.StreamCode_STREAM_CODE_NOT_EXPORTED)
	if got := gw.accepted.Load(); got != 1 {
		t.Errorf("gateway carried %d connections, want the one session", got)
	}

	base() // west may no longer consume echo
	before := len(app.SPIFFEIDs())
	if got, _ := roundTrip(t, client, []byte("ping")); len(got) != 0 {
		t.Errorf("after the policy change: got %q, want a refusal", got)
	}
	err = openAndRead(t, client, 0)
	checkStreamRefusal(t, err, straitv1.StreamCode_STREAM_CODE_UNAUTHORIZED)
	if n := len(app.SPIFFEIDs()); n != before {
		t.Errorf("the app saw %d more connections after the policy change, want none", n-before)
	}
	if got := metricValue(t, server, "strait_proxy_inbound_refusals_total", map[string]string{"reason": "unauthorized"}); got < 1 {
		t.Errorf("unauthorized refusals counted: %v, want at least 1", got)
	}
	if got := metricValue(t, server, "strait_proxy_inbound_refusals_total", map[string]string{"reason": refusedMisrouted}); got < 1 {
		t.Errorf("misrouted refusals counted: %v, want at least 1", got)
	}
}

// openAndRead opens a connection of p's upstream i as serveOutbound does
// (connect) and reads from it: a stream's refusal arrives on its first
// read. It returns the refusal as a RouteError.
func openAndRead(t *testing.T, p *Proxy, i int) error {
	t.Helper()
	conn, cand, err := p.connect(context.Background(), p.cfg.Upstreams[i], p.log)
	if err != nil {
		return err
	}
	defer cand.release()
	defer conn.Close()
	// An accepted stream would wait for the echo: give up then.
	stop := time.AfterFunc(5*time.Second, func() { _ = conn.Close() })
	defer stop.Stop()
	_, err = conn.Read(make([]byte, 1))
	if re, ok := destinationRefusal(err, cand.addr); ok {
		return re
	}
	return err
}

// checkStreamRefusal checks that err is a refusal with code.
func checkStreamRefusal(t *testing.T, err error, code straitv1.StreamCode) {
	t.Helper()
	var re *RouteError
	if !errors.As(err, &re) || re.Code != code {
		t.Errorf("stream error = %v, want a refusal with code %v", err, code)
	}
}

// roundTripVia is roundTrip through the listener at addr.
func roundTripVia(t testing.TB, addr net.Addr, msg []byte) ([]byte, error) {
	t.Helper()
	c, err := net.Dial("tcp", addr.String())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(msg); err != nil {
		return nil, err
	}
	_ = c.(*net.TCPConn).CloseWrite()
	return io.ReadAll(c)
}

func mustID(t testing.TB, s string) spiffeid.ID {
	t.Helper()
	id, err := spiffeid.FromString(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// blackholeGateway is a pass-through gateway that can stop forwarding
// anything in either direction without closing (as a SIGKILLed or
// partitioned gateway does), and change where new connections go.
type blackholeGateway struct {
	*fakeGateway
	mu sync.Mutex
	// gen counts the blackhole calls; a connection accepted in an
	// earlier generation is silent.
	gen   int
	conns []net.Conn
}

func newBlackholeGateway(t testing.TB) *blackholeGateway {
	g := &blackholeGateway{fakeGateway: &fakeGateway{ln: listen(t)}}
	go g.serve(func(c net.Conn) {
		defer c.Close()
		target, _ := g.target.Load().(string)
		up, err := net.Dial("tcp", target)
		if err != nil {
			return
		}
		defer up.Close()
		g.mu.Lock()
		g.conns = append(g.conns, c, up)
		gen := g.gen
		g.mu.Unlock()
		done := make(chan struct{})
		go func() { g.copy(up, c, gen); close(done) }()
		g.copy(c, up, gen)
		<-done
	})
	t.Cleanup(func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		for _, c := range g.conns {
			_ = c.Close()
		}
	})
	return g
}

// copy forwards src to dst, a connection of generation gen, until the
// gateway turns it into a black hole.
func (g *blackholeGateway) copy(dst, src net.Conn, gen int) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		g.mu.Lock()
		hole := g.gen > gen
		g.mu.Unlock()
		if hole {
			_, _ = io.Copy(io.Discard, src) // swallow everything, answer nothing
			return
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// blackhole makes every connection open now silent; new connections are
// forwarded to addr.
func (g *blackholeGateway) blackhole(addr string) {
	g.forwardTo(addr)
	g.mu.Lock()
	g.gen++
	g.mu.Unlock()
}

// TestSessionRetryBeforeFirstByte: a stream refused before its first byte
// goes elsewhere with the bytes the application sent, as a connection
// does: on a session whose endpoint's application is down (refused with
// NO_ENDPOINT, retried on the other endpoint). A stream whose path went
// silent after its bytes went out (a gateway that stops forwarding) fails
// once the session's PINGs go unanswered: its request may have arrived
// (at most once); the next connection opens a new session, which the
// gateway routes elsewhere.
func TestSessionRetryBeforeFirstByte(t *testing.T) {
	t.Run("application down", func(t *testing.T) {
		w := newWorld(t)
		w.reg.setBase(gateway(west, "gw1", ""), export(west))
		slow := func(c *Config) { c.HealthCheck.Interval = time.Hour } // the endpoint stays ready
		_, appA := w.serverProxy(west, "echo-a", sessionsMode(SessionsOn), slow)
		_, appB := w.serverProxy(west, "echo-b", sessionsMode(SessionsOn), slow)
		client := w.sessionClient(west, w.svid(west, "client"), "", sessionsMode(SessionsOn))
		// Warm sessions to both endpoints (the choice is by load).
		for i := 0; len(appA.SPIFFEIDs()) == 0 || len(appB.SPIFFEIDs()) == 0; i++ {
			if i == 200 {
				t.Fatalf("200 connections never reached both endpoints")
			}
			if got, err := roundTrip(t, client, []byte("warm")); err != nil || string(got) != "warm" {
				t.Fatalf("round trip = %q, %v", got, err)
			}
		}
		_ = appA.Close()
		servedB := len(appB.SPIFFEIDs())
		for i := range 20 {
			msg := fmt.Sprintf("after %d", i)
			if got, err := roundTrip(t, client, []byte(msg)); err != nil || string(got) != msg {
				t.Fatalf("connection %d after A's app died: round trip = %q, %v", i, got, err)
			}
		}
		if got := len(appB.SPIFFEIDs()) - servedB; got != 20 {
			t.Errorf("B served %d of the 20 connections", got)
		}
	})
	t.Run("quiet session's path died", func(t *testing.T) {
		// A session that has not heard from its peer lately holds a new
		// stream's bytes until the answer: when the answer never comes,
		// nothing was sent, and the connection goes to a new session.
		w := newWorld(t)
		gw, appA, serverB, appB := twoServersBehind(t, w)
		client := w.sessionClient(west, w.svid(west, "client"), east, func(c *Config) {
			c.Sessions = SessionsOn
			c.Session.PingAfter, c.Session.PingTimeout = 50*time.Millisecond, 200*time.Millisecond
			c.Session.Pipeline = -1 // every session counts as quiet
		})
		if got, err := roundTrip(t, client, []byte("warm")); err != nil || string(got) != "warm" {
			t.Fatalf("round trip = %q, %v", got, err)
		}
		gw.blackhole(serverB.InboundAddr().String())
		if got, err := roundTrip(t, client, []byte("moved")); err != nil || string(got) != "moved" {
			t.Fatalf("round trip after the path died = %q, %v", got, err)
		}
		if a, b := len(appA.SPIFFEIDs()), len(appB.SPIFFEIDs()); a != 1 || b != 1 {
			t.Errorf("A's app saw %d connections, B's %d; want 1 and 1", a, b)
		}
	})
	t.Run("quiet session's path died, slow PINGs", func(t *testing.T) {
		// The same at the default PING timeouts (dead after 6s): the held
		// stream probes its silent session with a PING and gives up when
		// that goes unanswered (at least 1s), with nothing sent, and goes
		// to a new session; it does not wait for the session to be
		// declared dead.
		w := newWorld(t)
		gw, appA, serverB, appB := twoServersBehind(t, w)
		client := w.sessionClient(west, w.svid(west, "client"), east, func(c *Config) {
			c.Sessions = SessionsOn
			c.Session.Pipeline = -1 // every session counts as quiet
		})
		if got, err := roundTrip(t, client, []byte("warm")); err != nil || string(got) != "warm" {
			t.Fatalf("round trip = %q, %v", got, err)
		}
		gw.blackhole(serverB.InboundAddr().String())
		start := time.Now()
		if got, err := roundTrip(t, client, []byte("moved")); err != nil || string(got) != "moved" {
			t.Fatalf("round trip after the path died = %q, %v", got, err)
		}
		dead := session.DefaultPingAfter + session.DefaultPingTimeout
		if took := time.Since(start); took >= dead*3/4 {
			t.Errorf("the connection took %s: it waited for the dead session's PING timeout (%s)", took, dead)
		}
		if a, b := len(appA.SPIFFEIDs()), len(appB.SPIFFEIDs()); a != 1 || b != 1 {
			t.Errorf("A's app saw %d connections, B's %d; want 1 and 1", a, b)
		}
		if got := metricValue(t, client, "strait_proxy_session_streams_abandoned_total", map[string]string{"reason": session.ReasonStalled}); got != 1 {
			t.Errorf("streams abandoned = %v, want 1", got)
		}
	})
	t.Run("path silent", func(t *testing.T) {
		w := newWorld(t)
		gw, appA, serverB, appB := twoServersBehind(t, w)
		fast := func(c *Config) {
			c.Sessions = SessionsOn
			c.Session.PingAfter, c.Session.PingTimeout = 50*time.Millisecond, 200*time.Millisecond
			c.SessionPipeline = PipelineOn
			c.Session.Pipeline = time.Hour // the request goes out with the stream
		}
		client := w.sessionClient(west, w.svid(west, "client"), east, fast)
		if got, err := roundTrip(t, client, []byte("warm")); err != nil || string(got) != "warm" {
			t.Fatalf("round trip = %q, %v", got, err)
		}
		gw.blackhole(serverB.InboundAddr().String())
		start := time.Now()
		if got, err := roundTrip(t, client, []byte("lost")); err == nil || len(got) != 0 {
			t.Fatalf("round trip on the silent session = %q, %v; want a failure", got, err)
		}
		t.Logf("failed after %s", time.Since(start))
		if got, err := roundTrip(t, client, []byte("moved")); err != nil || string(got) != "moved" {
			t.Fatalf("round trip after the path went silent = %q, %v", got, err)
		}
		if n := len(appA.SPIFFEIDs()); n != 1 {
			t.Errorf("A's app saw %d connections, want only the first", n)
		}
		if n := len(appB.SPIFFEIDs()); n != 1 {
			t.Errorf("B's app saw %d connections, want 1 (the lost request is not sent again)", n)
		}
	})
}

// TestSessionStalledLeft: once a stream has waited for its answer longer
// than a few round trips, new connections go to a new session (through the
// gateway, which routes them elsewhere) without waiting for the stalled
// session to be declared dead; the waiting connection is left alone.
func TestSessionStalledLeft(t *testing.T) {
	w := newWorld(t)
	gw, _, serverB, appB := twoServersBehind(t, w)
	client := w.sessionClient(west, w.svid(west, "client"), east, func(c *Config) {
		c.Sessions = SessionsOn
		// Declared dead 3s after the path went silent: long after it
		// stalls (a few round trips, at least 100ms).
		c.Session.PingAfter, c.Session.PingTimeout = time.Second, 2*time.Second
	})
	if got, err := roundTrip(t, client, []byte("warm")); err != nil || string(got) != "warm" {
		t.Fatalf("round trip = %q, %v", got, err)
	}
	gw.blackhole(serverB.InboundAddr().String())
	stuck := make(chan error, 1)
	go func() { _, err := roundTrip(t, client, []byte("stuck")); stuck <- err }()
	eventually(t, 5*time.Second, "the session stalled", func() bool {
		stalled := false
		client.sessions.Sweep(func(_ session.Key, c *session.Client) bool {
			stalled = stalled || c.Stalled()
			return false
		})
		return stalled
	})
	if got, err := roundTrip(t, client, []byte("moved")); err != nil || string(got) != "moved" {
		t.Fatalf("round trip after the session stalled = %q, %v", got, err)
	}
	if n := len(appB.SPIFFEIDs()); n != 1 {
		t.Errorf("B's app saw %d connections, want 1", n)
	}
	select {
	case err := <-stuck:
		t.Errorf("the stalled connection ended (%v) before its session was declared dead", err)
	default:
	}
}

// TestSessionClosesAtPeerExpiry: no stream outlives the destination's
// certificate: the caller's session (and the connection it carries) is
// closed when the certificate the destination presented expires.
func TestSessionClosesAtPeerExpiry(t *testing.T) {
	w := newWorld(t)
	w.reg.setBase(gateway(west, "gw1", ""), export(west))
	id := "spiffe://" + westTD + "/ns/default/sa/echo"
	const ttl = 3 * time.Second
	short, err := w.cas[west].IssueX509SVID(mustID(t, id), ttl)
	if err != nil {
		t.Fatal(err)
	}
	w.serverProxy(west, "echo-1", sessionsMode(SessionsOn), func(c *Config) { c.SVIDs = short })
	client := w.sessionClient(west, w.svid(west, "client"), "", sessionsMode(SessionsOn))
	c, err := net.Dial("tcp", client.UpstreamAddr(0).String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("echo: %v", err)
	}
	notAfter := short.Certificates[0].NotAfter
	_ = c.SetReadDeadline(notAfter.Add(3 * time.Second))
	_, err = c.Read(buf) // blocks until the proxy ends the connection
	ended := time.Now()
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open 3s after the destination's certificate expired")
	}
	if ended.Before(notAfter.Add(-time.Second)) {
		t.Errorf("connection ended at %s, %s before the certificate expired (%v)", ended, notAfter.Sub(ended), err)
	}
}

// TestSessionReplaced: a session takes new streams for MaxAge only, and a
// session through gateways to a cluster whose gateway starts draining is
// retired at once (the ingress it goes through may be the draining one):
// the next connections open a new session, through the gateway again, so
// that the ingress chooses again.
func TestSessionReplaced(t *testing.T) {
	tests := []struct {
		name   string
		maxAge time.Duration
		// change, if set, changes the records after the first session.
		change func(w *world, gw *fakeGateway)
	}{
		{"max age", 300 * time.Millisecond, nil},
		{"remote gateway draining", 0, func(w *world, gw *fakeGateway) {
			drained := gateway(east, "gw1", "")
			drained.Draining = true
			w.reg.setBase(gateway(west, "gw1", gw.Addr()), drained, export(east, "spiffe://"+westTD))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			gw := passthroughGateway(t)
			w.reg.setBase(gateway(west, "gw1", gw.Addr()), gateway(east, "gw1", ""), export(east, "spiffe://"+westTD))
			server, _ := w.serverProxy(east, "echo-east", sessionsMode(SessionsOn))
			gw.forwardTo(server.InboundAddr().String())
			client := w.sessionClient(west, w.svid(west, "client"), east, func(c *Config) {
				c.Sessions, c.Session.MaxAge = SessionsOn, tt.maxAge
			})
			for range 2 {
				if got, err := roundTrip(t, client, []byte("ping")); err != nil || string(got) != "ping" {
					t.Fatalf("round trip = %q, %v", got, err)
				}
			}
			if n := gw.accepted.Load(); n != 1 {
				t.Fatalf("gateway carried %d connections for two connections, want one session", n)
			}
			if tt.change != nil {
				tt.change(w, gw)
			}
			eventually(t, 5*time.Second, "a new session", func() bool {
				if got, err := roundTrip(t, client, []byte("ping")); err != nil || string(got) != "ping" {
					t.Fatalf("round trip = %q, %v", got, err)
				}
				return gw.accepted.Load() == 2
			})
			// The retired session closes once idle: on the server, one
			// session is left.
			eventually(t, 5*time.Second, "the old session closed", func() bool {
				return metricValue(t, server, "strait_proxy_sessions_open", map[string]string{"side": session.SideServer}) == 1
			})
		})
	}
}

// twoServersBehind starts two session-mode server proxies of east, A and
// B, behind west's one gateway, a blackholeGateway forwarding to A.
func twoServersBehind(t *testing.T, w *world) (gw *blackholeGateway, appA *demo.EchoServer, serverB *Proxy, appB *demo.EchoServer) {
	t.Helper()
	gw = newBlackholeGateway(t)
	w.reg.setBase(gateway(west, "gw1", gw.Addr()), gateway(east, "gw1", ""), export(east, "spiffe://"+westTD))
	serverA, appA := w.serverProxy(east, "echo-a", sessionsMode(SessionsOn))
	serverB, appB = w.serverProxy(east, "echo-b", sessionsMode(SessionsOn))
	gw.forwardTo(serverA.InboundAddr().String())
	return gw, appA, serverB, appB
}
