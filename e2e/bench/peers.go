package bench

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// readyTimeout bounds how long a started process may take to serve.
const readyTimeout = 60 * time.Second

// Route is one service of a TLS pair: the client side accepts plain TCP on
// Entry and the server side forwards to Target.
type Route struct {
	Name string
	// Target is the app's address behind the server side.
	Target string
	// Via, when set, is what the client side dials instead of the server
	// side's own address (a WAN link in front of it); ServerPort returns the
	// port it must forward to.
	Via string
	// Entry and Server are filled in by the start functions.
	Entry, Server string
}

// Pair is a started TLS pair: a client-side and a server-side process.
type Pair struct {
	Client, Server *Proc
	Routes         []*Route
}

// Route returns the route named name.
func (p *Pair) Route(name string) *Route {
	for _, r := range p.Routes {
		if r.Name == name {
			return r
		}
	}
	return nil
}

// freePort returns a loopback TCP port that was free a moment ago, and free
// for UDP too.
func freePort() (int, error) {
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("bench: free port: %w", err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		_ = ln.Close()
		if err == nil {
			_ = u.Close()
			return port, nil
		}
	}
	return 0, fmt.Errorf("bench: no free port")
}

func freeAddr() (string, error) {
	p, err := freePort()
	return fmt.Sprintf("127.0.0.1:%d", p), err
}

// assignPorts picks the entry and server ports of every route.
func assignPorts(routes []*Route) error {
	for _, r := range routes {
		for _, a := range []*string{&r.Entry, &r.Server} {
			if *a != "" {
				continue
			}
			var err error
			if *a, err = freeAddr(); err != nil {
				return err
			}
		}
	}
	return nil
}

// waitTCP waits until addr accepts a TCP connection.
func waitTCP(ctx context.Context, addr string, timeout time.Duration) error {
	return waitProcTCP(ctx, nil, addr, timeout)
}

// waitProcTCP waits until addr accepts a TCP connection, failing early when
// p (if not nil) exits.
func waitProcTCP(ctx context.Context, p *Proc, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if p != nil {
			if done, err := p.Exited(); done {
				data, _ := os.ReadFile(p.Log)
				return fmt.Errorf("bench: %s exited (%v) before listening on %s; log %s:\n%s", p.Name, err, addr, p.Log, tail(data, 2000))
			}
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench: %s not listening after %s: %w", addr, timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func dialTarget(r *Route) string {
	if r.Via != "" {
		return r.Via
	}
	return r.Server
}

// StartStunnel starts a stunnel4 pair (TLS 1.3, the harness' ECDSA P-256
// certificate, stunnel's defaults otherwise).
func StartStunnel(ctx context.Context, ps *Procs, bin, dir string, cert *Cert, routes []*Route) (*Pair, error) {
	if err := assignPorts(routes); err != nil {
		return nil, err
	}
	var srv, cli strings.Builder
	common := "foreground = yes\npid =\nsyslog = no\n"
	srv.WriteString(common)
	cli.WriteString(common)
	for _, r := range routes {
		fmt.Fprintf(&srv, "[%s]\naccept = %s\nconnect = %s\ncert = %s\nkey = %s\nsslVersionMin = TLSv1.3\n",
			r.Name, r.Server, r.Target, cert.CertFile, cert.KeyFile)
		fmt.Fprintf(&cli, "[%s]\nclient = yes\naccept = %s\nconnect = %s\nsslVersionMin = TLSv1.3\n",
			r.Name, r.Entry, dialTarget(r))
	}
	return startPair(ctx, ps, "stunnel4", bin, dir, routes, srv.String(), cli.String(),
		func(cfg string) []string { return []string{cfg} })
}

// StartHAProxy starts an haproxy pair in TCP mode with TLS between the two
// (haproxy's defaults otherwise: one process, a thread per CPU).
func StartHAProxy(ctx context.Context, ps *Procs, bin, dir string, cert *Cert, routes []*Route) (*Pair, error) {
	if err := assignPorts(routes); err != nil {
		return nil, err
	}
	var srv, cli strings.Builder
	common := "global\n  maxconn 4000\n  ssl-default-bind-options ssl-min-ver TLSv1.3\n" +
		"  ssl-default-server-options ssl-min-ver TLSv1.3\n" +
		"defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 120s\n  timeout server 120s\n"
	srv.WriteString(common)
	cli.WriteString(common)
	for _, r := range routes {
		fmt.Fprintf(&srv, "listen %s\n  bind %s ssl crt %s\n  server app %s\n", r.Name, r.Server, cert.PairFile, r.Target)
		fmt.Fprintf(&cli, "listen %s\n  bind %s\n  server peer %s ssl verify none\n", r.Name, r.Entry, dialTarget(r))
	}
	return startPair(ctx, ps, "haproxy", bin, dir, routes, srv.String(), cli.String(),
		func(cfg string) []string { return []string{"-db", "-f", cfg} })
}

// StartRawQUIC starts the rawquic relay pair for one route, its client
// spreading streams over conns QUIC connections.
func StartRawQUIC(ctx context.Context, ps *Procs, bin string, r *Route, conns int) (*Pair, error) {
	if err := assignPorts([]*Route{r}); err != nil {
		return nil, err
	}
	s, err := ps.Start("rawquic-server", bin, "server", "-listen", r.Server, "-to", r.Target)
	if err != nil {
		return nil, err
	}
	if _, err := s.WaitLog(ctx, "rawquic server ready", readyTimeout); err != nil {
		return nil, err
	}
	c, err := ps.Start("rawquic-client", bin, "client", "-listen", r.Entry, "-to", r.Server, "-conns", strconv.Itoa(max(1, conns)))
	if err != nil {
		return nil, err
	}
	if _, err := c.WaitLog(ctx, "rawquic client ready", readyTimeout); err != nil {
		return nil, err
	}
	return &Pair{Client: c, Server: s, Routes: []*Route{r}}, nil
}

func startPair(ctx context.Context, ps *Procs, name, bin, dir string, routes []*Route, srvCfg, cliCfg string, args func(string) []string) (*Pair, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("bench: %s: %w", name, err)
	}
	procName := name
	if base := filepath.Base(dir); base == "ttfb" {
		procName = name + "-ttfb"
	}
	srvPath := filepath.Join(dir, procName+"-server.cfg")
	cliPath := filepath.Join(dir, procName+"-client.cfg")
	if err := os.WriteFile(srvPath, []byte(srvCfg), 0o600); err != nil {
		return nil, fmt.Errorf("bench: %s: %w", name, err)
	}
	if err := os.WriteFile(cliPath, []byte(cliCfg), 0o600); err != nil {
		return nil, fmt.Errorf("bench: %s: %w", name, err)
	}
	s, err := ps.Start(procName+"-server", bin, args(srvPath)...)
	if err != nil {
		return nil, err
	}
	c, err := ps.Start(procName+"-client", bin, args(cliPath)...)
	if err != nil {
		return nil, err
	}
	for _, r := range routes {
		if err := waitProcTCP(ctx, s, r.Server, readyTimeout); err != nil {
			return nil, err
		}
		if err := waitProcTCP(ctx, c, r.Entry, readyTimeout); err != nil {
			return nil, err
		}
	}
	return &Pair{Client: c, Server: s, Routes: routes}, nil
}
