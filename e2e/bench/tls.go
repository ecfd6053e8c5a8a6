package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// TLSInfo is what the handshakes of one TLS hop of a setup negotiated, as
// measured: read from the logs of the peer process that made them, from
// Strait's strait_tls_handshakes_total counters, or from an openssl s_client
// probe with the client's certificate (Source says which).
type TLSInfo struct {
	// Setup is the table column, Resumption "off" or "on" (what the setup
	// was configured for), Hop the TLS session it describes.
	Setup, Resumption, Hop string
	// Source names where the values were read.
	Source string
	// Version, Group and Cipher list every distinct value seen (comma
	// separated); empty when the source does not say.
	Version, Group, Cipher string
	// Handshakes counts the handshakes seen, Resumed those that resumed a
	// session; Resumed is -1 when the source does not say.
	Handshakes, Resumed int
}

// tlsCounts accumulates what a log says about its handshakes.
type tlsCounts struct {
	versions, groups, ciphers map[string]bool
	handshakes, resumed       int
}

func newTLSCounts() *tlsCounts {
	return &tlsCounts{versions: map[string]bool{}, groups: map[string]bool{}, ciphers: map[string]bool{}}
}

func joinSet(m map[string]bool) string { return strings.Join(slices.Sorted(maps.Keys(m)), ",") }

func (c *tlsCounts) info(setup, resumption, hop, source string) TLSInfo {
	return TLSInfo{Setup: setup, Resumption: resumption, Hop: hop, Source: source,
		Version: joinSet(c.versions), Group: joinSet(c.groups), Cipher: joinSet(c.ciphers),
		Handshakes: c.handshakes, Resumed: c.resumed}
}

var (
	stunnelSession = regexp.MustCompile(`TLS (?:connected|accepted): (new session negotiated|previous session reused)`)
	stunnelCipher  = regexp.MustCompile(`(TLSv[0-9.]+) ciphersuite: (\S+)`)
	stunnelKey     = regexp.MustCompile(`Peer temporary key: ([^,\s]+)`)
	haproxyTLS     = regexp.MustCompile(`tls side=\S+ version=(\S*) cipher=(\S*) resumed=(\S*)`)
)

// parseStunnelLog reads the handshakes of a stunnel4 log at level info: a
// "TLS connected/accepted" line per handshake (new or reused session), its
// protocol and cipher suite, and the peer's temporary key (the group).
func parseStunnelLog(r io.Reader) *tlsCounts {
	c := newTLSCounts()
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if m := stunnelSession.FindStringSubmatch(line); m != nil {
			c.handshakes++
			if m[1] == "previous session reused" {
				c.resumed++
			}
		}
		if m := stunnelCipher.FindStringSubmatch(line); m != nil {
			c.versions[m[1]], c.ciphers[m[2]] = true, true
		}
		if m := stunnelKey.FindStringSubmatch(line); m != nil {
			c.groups[m[1]] = true
		}
	}
	return c
}

// parseHAProxyLog reads the log lines of the log-formats haproxyServerLog
// and haproxyClientLog (one per connection). haproxy 2.6 has no sample
// fetch for the key exchange group: the probe gives it.
func parseHAProxyLog(r io.Reader) *tlsCounts {
	c := newTLSCounts()
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		m := haproxyTLS.FindStringSubmatch(sc.Text())
		if m == nil || m[1] == "" || m[1] == "-" {
			continue // a connection that closed before its handshake
		}
		c.handshakes++
		c.versions[m[1]], c.ciphers[m[2]] = true, true
		if m[3] == "1" {
			c.resumed++
		}
	}
	return c
}

// parseTLSMetrics reads strait_tls_handshakes_total of one layer from a
// Prometheus text exposition.
func parseTLSMetrics(r io.Reader, layer string) *tlsCounts {
	c := newTLSCounts()
	c.resumed = -1
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "strait_tls_handshakes_total{") {
			continue
		}
		end := strings.LastIndexByte(line, '}')
		if end < 0 {
			continue
		}
		labels := map[string]string{}
		for _, kv := range strings.Split(line[len("strait_tls_handshakes_total{"):end], ",") {
			k, v, ok := strings.Cut(kv, "=")
			if ok {
				labels[k] = strings.Trim(v, `"`)
			}
		}
		if labels["layer"] != layer {
			continue
		}
		n, err := strconv.ParseFloat(strings.TrimSpace(line[end+1:]), 64)
		if err != nil || n == 0 {
			continue
		}
		c.handshakes += int(n)
		c.groups[labels["group"]], c.ciphers[labels["cipher"]] = true, true
	}
	return c
}

// straitTLS reads a layer's handshake counters from a Strait admin server.
func straitTLS(ctx context.Context, admin, layer string) (*tlsCounts, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("bench: metrics of %s: %w", admin, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("bench: metrics of %s: %s", admin, resp.Status)
	}
	return parseTLSMetrics(resp.Body, layer), nil
}

// logCounts parses the log of p with parse.
func logCounts(p *Proc, parse func(io.Reader) *tlsCounts) (*tlsCounts, error) {
	data, err := os.ReadFile(p.Log)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	return parse(bytes.NewReader(data)), nil
}

var (
	sclientVersion = regexp.MustCompile(`(?m)^Protocol version: (\S+)`)
	sclientCipher  = regexp.MustCompile(`(?m)^Ciphersuite: (\S+)`)
	sclientGroup   = regexp.MustCompile(`(?m)^(?:Server Temp Key|Negotiated TLS1.3 group): ([^,\s]+)`)
)

// probeTLS makes one handshake with openssl s_client to a TLS server of the
// peers, with the client certificate and the route's SNI, verifying the
// server as the peers' clients do, and returns what it negotiated.
func probeTLS(ctx context.Context, addr, route string, cert *Cert) (*tlsCounts, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "openssl", "s_client", "-connect", addr, "-cert", cert.ClientCertFile,
		"-key", cert.ClientKeyFile, "-CAfile", cert.CAFile, "-servername", SNIName(route),
		"-verify_hostname", SNIName(route), "-verify_return_error", "-brief")
	cmd.Stdin = strings.NewReader("")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("bench: openssl s_client %s: %w: %s", addr, err, tail(out, 500))
	}
	c := newTLSCounts()
	for _, f := range []struct {
		re  *regexp.Regexp
		set map[string]bool
	}{{sclientVersion, c.versions}, {sclientCipher, c.ciphers}, {sclientGroup, c.groups}} {
		if m := f.re.FindSubmatch(out); m != nil {
			f.set[string(m[1])] = true
		}
	}
	if len(c.versions) == 0 {
		return nil, fmt.Errorf("bench: openssl s_client %s: no handshake in %q", addr, tail(out, 500))
	}
	c.handshakes, c.resumed = 1, 0
	return c, nil
}

// WriteTLS writes the negotiated parameters, a line per setup and hop.
func WriteTLS(w io.Writer, infos []TLSInfo) {
	for _, t := range infos {
		resumed := "resumed n/a"
		if t.Resumed >= 0 {
			resumed = fmt.Sprintf("%d resumed", t.Resumed)
		}
		fmt.Fprintf(w, "tls %-12s resumption %-3s %-32s %-8s %-15s %-22s %4d handshakes, %s (%s)\n",
			t.Setup, t.Resumption, t.Hop, orDash(t.Version), orDash(t.Group), orDash(t.Cipher), t.Handshakes, resumed, t.Source)
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// readTLS reads what every setup's handshakes negotiated: the peers' logs
// (both sides of each TLS session), an openssl probe of each peer's TLS
// server for the key exchange group where the log does not name it,
// rawquic's server log and Strait's handshake counters (the inner layer on
// the destination proxies, the tunnel layer on the west gateways).
func (e *env) readTLS(ctx context.Context) error {
	var errs []error
	for _, src := range e.tlsSources {
		parse, peer := parseStunnelLog, "stunnel4"
		if src.haproxy {
			parse, peer = parseHAProxyLog, "haproxy"
		}
		for _, side := range []struct {
			name string
			p    *Proc
		}{{"client", src.pair.Client}, {"server", src.pair.Server}} {
			c, err := logCounts(side.p, parse)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			e.res.TLS = append(e.res.TLS, c.info(src.setup, src.resumption, "client→server ("+src.deployment+")", peer+" "+side.name+" log"))
		}
		if src.haproxy {
			r := src.pair.Routes[0]
			c, err := probeTLS(ctx, r.Server, r.Name, e.cert)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			e.res.TLS = append(e.res.TLS, c.info(src.setup, src.resumption, "client→server ("+src.deployment+")", "openssl s_client probe of the server side"))
		}
	}
	for _, p := range e.peers {
		if p.name != SetupRawQUIC && p.name != SetupRawQUIC4 {
			continue
		}
		srv := p.procs[roleServer]
		if p.name == SetupRawQUIC4 {
			srv = p.procs[roleGWWest]
		}
		c, err := logCounts(srv, parseRawQUICLog)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		e.res.TLS = append(e.res.TLS, c.info(p.name, "off", "QUIC client→server (main)", "rawquic server log: Go tls.ConnectionState"))
	}
	for _, s := range e.straits {
		// The deployment's name: the west gateway's process name
		// without its role.
		dep := " (" + strings.TrimSuffix(s.WestGW.Name, "-gw-"+westCluster) + ")"
		for _, layer := range []struct {
			name, hop string
			procs     []*Proc
		}{
			{"inner", "inner proxy→proxy", slices.Collect(maps.Values(s.WestProxies))},
			{"tunnel", "QUIC gateway→gateway", []*Proc{s.WestGW}},
		} {
			total := newTLSCounts()
			total.resumed = -1
			for _, p := range layer.procs {
				c, err := straitTLS(ctx, s.Admin[p], layer.name)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				total.handshakes += c.handshakes
				maps.Copy(total.groups, c.groups)
				maps.Copy(total.ciphers, c.ciphers)
			}
			// The counter names group and cipher, not the version: both
			// layers' configs have MinVersion TLS 1.3 (trust.harden), so a
			// counted handshake is TLS 1.3.
			if total.handshakes > 0 {
				total.versions["TLSv1.3"] = true
			}
			e.res.TLS = append(e.res.TLS, total.info(SetupStrait, "off", layer.hop+dep,
				"strait_tls_handshakes_total on the accepting side; version from MinVersion"))
		}
	}
	return errors.Join(errs...)
}

var rawquicTLS = regexp.MustCompile(`rawquic handshake.*version=(\S+) group=(\S+) cipher=(\S+) resumed=(\S+)`)

// parseRawQUICLog reads the rawquic server's handshake lines.
func parseRawQUICLog(r io.Reader) *tlsCounts {
	c := newTLSCounts()
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		m := rawquicTLS.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		c.handshakes++
		c.versions[m[1]], c.groups[m[2]], c.ciphers[m[3]] = true, true, true
		if m[4] == "true" {
			c.resumed++
		}
	}
	return c
}
