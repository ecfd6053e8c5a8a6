package proxy

import (
	"crypto/tls"
	"io"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/strait-mesh/strait/trust"
)

// TestInboundClosedAtCallerExpiry: a caller keeps one inbound connection
// open and sends a byte every 100ms. The destination proxy closes it once
// the caller's certificate has expired (or the maximum connection age has
// passed) and the grace period is over: bytes flow during the grace, none
// sent later comes back. On the old code the connection served past expiry.
func TestInboundClosedAtCallerExpiry(t *testing.T) {
	const grace = time.Second
	// lateTimer bounds how late the close may run on a loaded machine.
	const lateTimer = 500 * time.Millisecond
	for _, tc := range []struct {
		name   string
		ttl    time.Duration // of the caller's SVID
		maxAge time.Duration
	}{
		{"certificate expires", 5 * time.Second, 0},
		{"maximum connection age", time.Hour, 3 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			w.reg.setBase(gateway(west, "gw1", ""))
			server, _ := w.serverProxy(west, "echo-1", func(c *Config) {
				c.ExpiryGrace, c.MaxConnectionAge = grace, tc.maxAge
			})
			id, err := trust.WorkloadID(w.cas[west].TrustDomain(), "default", "client")
			if err != nil {
				t.Fatal(err)
			}
			caller, err := w.cas[west].IssueX509SVID(id, tc.ttl)
			if err != nil {
				t.Fatal(err)
			}
			cfg := tlsconfig.MTLSClientConfig(caller, w.bundles, tlsconfig.AuthorizeAny())
			cfg.ServerName = "9000.echo.default.west.strait"
			conn, err := tls.Dial("tcp", server.InboundAddr().String(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			deadline := caller.Certificates[0].NotAfter
			if tc.maxAge > 0 {
				deadline = time.Now().Add(tc.maxAge)
			}
			closeBy := deadline.Add(grace)
			_ = conn.SetDeadline(closeBy.Add(5 * time.Second))

			var lastEchoSent time.Time
			var readErr error
			buf := make([]byte, 1)
			for {
				sent := time.Now()
				if _, err := conn.Write([]byte{'y'}); err != nil {
					readErr = err
					break
				}
				if _, err := io.ReadFull(conn, buf); err != nil {
					readErr = err
					break
				}
				lastEchoSent = sent
				time.Sleep(100 * time.Millisecond) // pacing the traffic
			}
			closedAt := time.Now()
			t.Logf("closed %s after deadline + grace (%v); last echoed byte sent %s after deadline + grace",
				closedAt.Sub(closeBy).Round(time.Millisecond), readErr, lastEchoSent.Sub(closeBy).Round(time.Millisecond))
			if closedAt.After(closeBy.Add(lateTimer)) {
				t.Errorf("connection served %s past deadline + grace", closedAt.Sub(closeBy).Round(time.Millisecond))
			}
			if lastEchoSent.After(closeBy.Add(lateTimer)) {
				t.Errorf("a byte sent %s after deadline + grace was relayed", lastEchoSent.Sub(closeBy))
			}
			if !lastEchoSent.After(deadline) {
				t.Errorf("no byte relayed during the grace period (last sent %s before the deadline)", deadline.Sub(lastEchoSent))
			}
		})
	}
}
