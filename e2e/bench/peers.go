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

// Pair is a started peer setup: a client-side and a server-side process,
// and the relays between them of the setups that have the shape of Strait's
// path (nil for the 2-process pairs).
type Pair struct {
	Client, Server *Proc
	// EastGW and WestGW are the relays in the position of Strait's egress
	// and ingress gateways: haproxy's SNI gateway (WestGW only: the Istio
	// shape has no egress gateway) and rawquic's QUIC client and server in
	// its 4-hop setup.
	EastGW, WestGW *Proc
	// GatewayAddr is the address of the haproxy SNI gateway.
	GatewayAddr string
	Routes      []*Route
}

// Procs returns the pair's processes by role (roleClient, roleServer,
// roleGWEast, roleGWWest).
func (p *Pair) Procs() usageSet {
	u := usageSet{roleClient: p.Client, roleServer: p.Server}
	if p.EastGW != nil {
		u[roleGWEast] = p.EastGW
	}
	if p.WestGW != nil {
		u[roleGWWest] = p.WestGW
	}
	return u
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

// PeerOptions are what the peers' TLS setups share.
type PeerOptions struct {
	// Resume turns TLS session resumption on (session cache and tickets,
	// the peers' defaults). Off, both sides refuse it: stunnel4's
	// sessionResume = no; haproxy's no-tls-tickets, no-ssl-reuse and
	// tune.ssl.cachesize 0.
	Resume bool
	// Name distinguishes the process names and config files of several
	// instances of one peer (e.g. "ttfb").
	Name string
	// GatewayAddr is where StartHAProxySNI's gateway listens. Zero means
	// a free loopback port.
	GatewayAddr string
}

func (o PeerOptions) procName(peer string) string {
	if o.Name == "" {
		return peer
	}
	return peer + "-" + o.Name
}

// PeerCipherSuite is the one TLS 1.3 cipher suite the peers may use: the
// one Go's crypto/tls, and so Strait, negotiates on machines with AES
// hardware (OpenSSL would pick TLS_AES_256_GCM_SHA384). The key exchange
// cannot match: OpenSSL 3.0 has no X25519MLKEM768, which Go prefers.
const PeerCipherSuite = "TLS_AES_128_GCM_SHA256"

// StartStunnel starts a stunnel4 pair: TLS 1.3 only, mutual TLS with
// verification on both sides (the client presents the client certificate,
// the server requires and verifies it against the CA; the client verifies
// the server's against the CA and the route's SNI name), PeerCipherSuite,
// stunnel's defaults otherwise. It logs at level info, where stunnel names the negotiated
// protocol, cipher suite and key exchange and whether the session was
// resumed (read by ReadTLSLogs).
func StartStunnel(ctx context.Context, ps *Procs, bin, dir string, cert *Cert, routes []*Route, o PeerOptions) (*Pair, error) {
	if err := assignPorts(routes); err != nil {
		return nil, err
	}
	var srv, cli strings.Builder
	common := "foreground = yes\npid =\nsyslog = no\ndebug = info\n"
	srv.WriteString(common)
	cli.WriteString(common)
	resume := "no"
	if o.Resume {
		resume = "yes"
	}
	for _, r := range routes {
		fmt.Fprintf(&srv, "[%s]\naccept = %s\nconnect = %s\ncert = %s\nkey = %s\nCAfile = %s\nverifyChain = yes\n"+
			"sslVersionMin = TLSv1.3\nciphersuites = %s\nsessionResume = %s\n",
			r.Name, r.Server, r.Target, cert.CertFile, cert.KeyFile, cert.CAFile, PeerCipherSuite, resume)
		fmt.Fprintf(&cli, "[%s]\nclient = yes\naccept = %s\nconnect = %s\ncert = %s\nkey = %s\nCAfile = %s\nverifyChain = yes\n"+
			"checkHost = %s\nsni = %s\nsslVersionMin = TLSv1.3\nciphersuites = %s\nsessionResume = %s\n",
			r.Name, r.Entry, dialTarget(r), cert.ClientCertFile, cert.ClientKeyFile, cert.CAFile, SNIName(r.Name), SNIName(r.Name),
			PeerCipherSuite, resume)
	}
	return startPair(ctx, ps, o.procName("stunnel4"), bin, dir, routes, srv.String(), cli.String(),
		func(cfg string) []string { return []string{cfg} })
}

// haproxyCommon is the global and defaults section of every haproxy: TLS
// 1.3 only with PeerCipherSuite, a log line per connection on stdout (the log-format of each
// section names what it logs), and without resumption unless o.Resume.
func haproxyCommon(o PeerOptions) string {
	s := "global\n  maxconn 4000\n  log stdout format raw local0 info\n" +
		"  ssl-default-bind-options ssl-min-ver TLSv1.3\n  ssl-default-server-options ssl-min-ver TLSv1.3\n" +
		"  ssl-default-bind-ciphersuites " + PeerCipherSuite + "\n  ssl-default-server-ciphersuites " + PeerCipherSuite + "\n"
	if !o.Resume {
		s += "  tune.ssl.cachesize 0\n"
	}
	return s + "defaults\n  mode tcp\n  log global\n  timeout connect 5s\n  timeout client 120s\n  timeout server 120s\n"
}

// haproxyTLSServer and haproxyTLSClient are the TLS options of a
// terminating bind and of an originating server line.
func haproxyTLSServer(cert *Cert, o PeerOptions) string {
	s := fmt.Sprintf("ssl crt %s ca-file %s verify required", cert.PairFile, cert.CAFile)
	if !o.Resume {
		s += " no-tls-tickets"
	}
	return s
}

func haproxyTLSClient(cert *Cert, route string, o PeerOptions) string {
	s := fmt.Sprintf("ssl crt %s ca-file %s verify required sni str(%s) verifyhost %s",
		cert.ClientPairFile, cert.CAFile, SNIName(route), SNIName(route))
	if !o.Resume {
		s += " no-ssl-reuse no-tls-tickets"
	}
	return s
}

// The log lines of haproxy's TLS sides, read by ReadTLSLogs.
const (
	haproxyServerLog = `  log-format "tls side=server version=%[ssl_fc_protocol] cipher=%[ssl_fc_cipher] resumed=%[ssl_fc_is_resumed]"` + "\n"
	haproxyClientLog = `  log-format "tls side=client version=%[ssl_bc_protocol] cipher=%[ssl_bc_cipher] resumed=%[ssl_bc_is_resumed]"` + "\n"
)

// StartHAProxy starts an haproxy pair in TCP mode with mutual TLS between
// the two, verified on both sides as StartStunnel's (haproxy's defaults
// otherwise: one process, a thread per CPU).
func StartHAProxy(ctx context.Context, ps *Procs, bin, dir string, cert *Cert, routes []*Route, o PeerOptions) (*Pair, error) {
	if err := assignPorts(routes); err != nil {
		return nil, err
	}
	var srv, cli strings.Builder
	srv.WriteString(haproxyCommon(o))
	cli.WriteString(haproxyCommon(o))
	for _, r := range routes {
		fmt.Fprintf(&srv, "listen %s\n%s  bind %s %s\n  server app %s\n", r.Name, haproxyServerLog, r.Server, haproxyTLSServer(cert, o), r.Target)
		fmt.Fprintf(&cli, "listen %s\n%s  bind %s\n  server peer %s %s\n", r.Name, haproxyClientLog, r.Entry, dialTarget(r), haproxyTLSClient(cert, r.Name, o))
	}
	return startPair(ctx, ps, o.procName("haproxy"), bin, dir, routes, srv.String(), cli.String(),
		func(cfg string) []string { return []string{"-db", "-f", cfg} })
}

// StartHAProxySNI starts the Istio multi-network shape with haproxy, each
// its own process: a client-side haproxy originating mutual TLS with the
// route's SNI name → an east-west gateway haproxy that routes by the SNI of
// the ClientHello it peeks (mode tcp, req.ssl_sni) without terminating TLS
// → a server-side haproxy terminating mutual TLS → app. Routes' Via, when
// set, is what the client side dials instead of the gateway. The gateway is
// the pair's WestGW.
func StartHAProxySNI(ctx context.Context, ps *Procs, bin, dir string, cert *Cert, routes []*Route, o PeerOptions) (*Pair, error) {
	if err := assignPorts(routes); err != nil {
		return nil, err
	}
	gw := o.GatewayAddr
	if gw == "" {
		var err error
		if gw, err = freeAddr(); err != nil {
			return nil, err
		}
	}
	var srv, cli, gwc strings.Builder
	srv.WriteString(haproxyCommon(o))
	cli.WriteString(haproxyCommon(o))
	gwc.WriteString(haproxyCommon(o))
	fmt.Fprintf(&gwc, "frontend eastwest\n  bind %s\n  tcp-request inspect-delay 5s\n  tcp-request content accept if { req.ssl_hello_type 1 }\n", gw)
	for _, r := range routes {
		fmt.Fprintf(&gwc, "  use_backend %s if { req.ssl_sni -i %s }\n", r.Name, SNIName(r.Name))
	}
	for _, r := range routes {
		fmt.Fprintf(&gwc, "backend %s\n  server %s %s\n", r.Name, r.Name, r.Server)
		fmt.Fprintf(&srv, "listen %s\n%s  bind %s %s\n  server app %s\n", r.Name, haproxyServerLog, r.Server, haproxyTLSServer(cert, o), r.Target)
		to := gw
		if r.Via != "" {
			to = r.Via
		}
		fmt.Fprintf(&cli, "listen %s\n%s  bind %s\n  server gateway %s %s\n", r.Name, haproxyClientLog, r.Entry, to, haproxyTLSClient(cert, r.Name, o))
	}
	// The gateway first: the readiness probe of the client side's
	// listener makes the client side dial it.
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("bench: haproxy gateway: %w", err)
	}
	gwPath := filepath.Join(dir, o.procName("haproxy-sni")+"-gateway.cfg")
	if err := os.WriteFile(gwPath, []byte(gwc.String()), 0o600); err != nil {
		return nil, fmt.Errorf("bench: haproxy gateway: %w", err)
	}
	gwProc, err := ps.Start(o.procName("haproxy-sni")+"-gateway", bin, "-db", "-f", gwPath)
	if err != nil {
		return nil, err
	}
	if err := waitProcTCP(ctx, gwProc, gw, readyTimeout); err != nil {
		return nil, err
	}
	p, err := startPair(ctx, ps, o.procName("haproxy-sni"), bin, dir, routes, srv.String(), cli.String(),
		func(cfg string) []string { return []string{"-db", "-f", cfg} })
	if err != nil {
		return nil, err
	}
	p.WestGW, p.GatewayAddr = gwProc, gw
	return p, nil
}

// StartRawQUIC starts the rawquic relay pair for one route, its client
// spreading streams over conns QUIC connections. With hops4, a plain TCP
// relay (rawquic tcp: 32 KiB copy buffers, no splice, as a proxy that
// terminates TLS cannot splice) stands before the client and after the
// server, the shape of Strait's proxy → gateway → QUIC → gateway → proxy,
// without any TLS but the QUIC connection's.
func StartRawQUIC(ctx context.Context, ps *Procs, bin string, r *Route, conns int, hops4 bool, name string) (*Pair, error) {
	if err := assignPorts([]*Route{r}); err != nil {
		return nil, err
	}
	p := &Pair{Routes: []*Route{r}}
	target, entry := r.Target, r.Entry
	var err error
	if hops4 {
		if target, err = freeAddr(); err != nil {
			return nil, err
		}
		if entry, err = freeAddr(); err != nil {
			return nil, err
		}
		if p.Server, err = ps.Start(name+"-proxy-server", bin, "tcp", "-listen", target, "-to", r.Target); err != nil {
			return nil, err
		}
		if _, err := p.Server.WaitLog(ctx, "rawquic tcp ready", readyTimeout); err != nil {
			return nil, err
		}
	}
	s, err := ps.Start(name+"-server", bin, "server", "-listen", r.Server, "-to", target)
	if err != nil {
		return nil, err
	}
	if _, err := s.WaitLog(ctx, "rawquic server ready", readyTimeout); err != nil {
		return nil, err
	}
	c, err := ps.Start(name+"-client", bin, "client", "-listen", entry, "-to", r.Server, "-conns", strconv.Itoa(max(1, conns)))
	if err != nil {
		return nil, err
	}
	if _, err := c.WaitLog(ctx, "rawquic client ready", readyTimeout); err != nil {
		return nil, err
	}
	if !hops4 {
		p.Client, p.Server = c, s
		return p, nil
	}
	p.EastGW, p.WestGW = c, s
	if p.Client, err = ps.Start(name+"-proxy-client", bin, "tcp", "-listen", r.Entry, "-to", entry); err != nil {
		return nil, err
	}
	if _, err := p.Client.WaitLog(ctx, "rawquic tcp ready", readyTimeout); err != nil {
		return nil, err
	}
	return p, nil
}

func startPair(ctx context.Context, ps *Procs, name, bin, dir string, routes []*Route, srvCfg, cliCfg string, args func(string) []string) (*Pair, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("bench: %s: %w", name, err)
	}
	procName := name
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
