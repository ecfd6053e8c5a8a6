package bench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"
)

// needPeers skips (fails under CI=true) when stunnel4 or haproxy is
// missing.
func needPeers(t *testing.T) map[string]string {
	t.Helper()
	bins := map[string]string{}
	for _, tool := range []string{"stunnel4", "haproxy"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			msg := fmt.Sprintf("%s not found (the Debian packages stunnel4 and haproxy; .ci/run installs them): %v", tool, err)
			if os.Getenv("CI") == "true" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
		bins[tool] = p
	}
	return bins
}

// startEcho starts a TCP echo server for the test.
func startEcho(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}

// exchange writes a line to conn and reads it back.
func exchange(c net.Conn) error {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	msg := []byte("ping\n")
	if _, err := c.Write(msg); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	_, err := io.ReadFull(c, buf)
	return err
}

// TestPeersMutualTLS checks that the peers run what the harness says they
// run: a connection through each setup reaches the app; each terminating
// side refuses a client without a certificate and one whose certificate
// another CA signed; the SNI gateway routes by the ClientHello's name and
// refuses a name it does not know.
func TestPeersMutualTLS(t *testing.T) {
	bins := needPeers(t)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cert, err := NewCert(dir, "echo")
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewCert(t.TempDir(), "echo")
	if err != nil {
		t.Fatal(err)
	}
	otherClient, err := tls.LoadX509KeyPair(other.ClientCertFile, other.ClientKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	goodClient, err := tls.LoadX509KeyPair(cert.ClientCertFile, cert.ClientKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(cert.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	app := startEcho(t)
	ps := NewProcs(dir)
	defer ps.Stop()
	for _, tt := range []struct {
		name  string
		start func() (*Pair, error)
	}{
		{"stunnel4", func() (*Pair, error) {
			return StartStunnel(ctx, ps, bins["stunnel4"], dir, cert, []*Route{{Name: "echo", Target: app}}, PeerOptions{})
		}},
		{"haproxy", func() (*Pair, error) {
			return StartHAProxy(ctx, ps, bins["haproxy"], dir, cert, []*Route{{Name: "echo", Target: app}}, PeerOptions{})
		}},
		{"haproxy_sni", func() (*Pair, error) {
			return StartHAProxySNI(ctx, ps, bins["haproxy"], dir, cert, []*Route{{Name: "echo", Target: app}}, PeerOptions{})
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, err := tt.start()
			if err != nil {
				t.Fatal(err)
			}
			r := p.Route("echo")
			c, err := net.Dial("tcp", r.Entry)
			if err != nil {
				t.Fatal(err)
			}
			if err := exchange(c); err != nil {
				t.Errorf("through the setup: %v", err)
			}
			_ = c.Close()
			// The terminating side, dialed as a client would.
			for _, cl := range []struct {
				name  string
				certs []tls.Certificate
				want  bool
			}{{"the client certificate", []tls.Certificate{goodClient}, true}, {"no certificate", nil, false},
				{"another CA's certificate", []tls.Certificate{otherClient}, false}} {
				tc, err := tls.Dial("tcp", r.Server, &tls.Config{ServerName: SNIName("echo"), RootCAs: roots, Certificates: cl.certs, MinVersion: tls.VersionTLS13})
				if err == nil {
					err = exchange(tc)
					_ = tc.Close()
				}
				if (err == nil) != cl.want {
					t.Errorf("server side with %s: err %v, want success %v", cl.name, err, cl.want)
				}
			}
			if p.WestGW == nil {
				return
			}
			// The gateway passes TLS through by SNI: the client
			// certificate's handshake completes end to end with the
			// server side; an unknown name is refused.
			for _, sni := range []struct {
				name string
				want bool
			}{{SNIName("echo"), true}, {SNIName("nope"), false}} {
				tc, err := tls.Dial("tcp", p.GatewayAddr, &tls.Config{ServerName: sni.name, RootCAs: roots, Certificates: []tls.Certificate{goodClient},
					MinVersion: tls.VersionTLS13, InsecureSkipVerify: !sni.want})
				if err == nil {
					err = exchange(tc)
					_ = tc.Close()
				}
				if (err == nil) != sni.want {
					t.Errorf("gateway with SNI %s: err %v, want success %v", sni.name, err, sni.want)
				}
			}
		})
	}
}
