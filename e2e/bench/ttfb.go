package bench

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/strait-mesh/strait/e2e/wan"
)

// straitNoResumption explains Strait's empty cell in the rows with
// resumption on.
const straitNoResumption = "strait: no value, Strait cannot resume TLS sessions (trust.ClientTLSConfig and " +
	"ServerTLSConfig disable session tickets and the client session cache on both layers, so that every " +
	"connection is verified against the current bundles); its QUIC connection between the gateways is pooled instead"

// ttfbTarget is one setup of the time-to-first-byte runs.
type ttfbTarget struct {
	setup  string
	resume bool
	addr   string
}

// ttfb measures new-connection time to first byte with a WAN link in front
// of each setup's remote side, at no added delay and then at WANRTT: a
// stunnel4 pair (the link between the two), haproxy's SNI-gateway chain
// (the link between the client side and the gateway, as a client sidecar
// reaches a remote cluster's east-west gateway) and a second Strait
// deployment (the link in front of the west gateway's QUIC ingress). The
// peers run twice, with session resumption off (the ttfb_* rows, as Strait)
// and on (the *_resumption_on rows, where Strait has no value).
func (e *env) ttfb(ctx context.Context) error {
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var links []*wan.Link
	done := make(chan struct{})
	defer func() {
		cancel()
		for range links {
			<-done
		}
	}()
	startLink := func(backend string, disableTCP, disableUDP bool) (*wan.Link, error) {
		addr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		l, err := wan.NewLink(wan.LinkConfig{Listen: addr, Backends: []string{backend},
			DisableTCP: disableTCP, DisableUDP: disableUDP, Logger: e.log.With("component", "wan")})
		if err != nil {
			return nil, fmt.Errorf("bench: wan: %w", err)
		}
		links = append(links, l)
		go func() { _ = l.Run(lctx); done <- struct{}{} }()
		return l, nil
	}
	var targets []ttfbTarget
	for _, resume := range []bool{false, true} {
		o := PeerOptions{Name: "ttfb", Resume: resume}
		res := "off"
		if resume {
			o.Name, res = "ttfb-resume", "on"
		}
		// stunnel4: client stunnel -> WAN (TCP) -> server stunnel -> app.
		st := &Route{Name: "ttfb", Target: e.echo.Plain.String()}
		if err := assignPorts([]*Route{st}); err != nil {
			return err
		}
		l, err := startLink(st.Server, false, true)
		if err != nil {
			return err
		}
		st.Via = l.Addr().String()
		stPair, err := StartStunnel(ctx, e.ps, e.bins.stunnel, filepath.Join(e.dir, o.Name), e.cert, []*Route{st}, o)
		if err != nil {
			return err
		}
		e.tlsSources = append(e.tlsSources, tlsSource{setup: SetupStunnel, resumption: res, deployment: "ttfb", pair: stPair})
		// haproxy: client -> WAN (TCP) -> SNI gateway -> server -> app.
		hr := &Route{Name: "ttfb", Target: e.echo.Plain.String()}
		if o.GatewayAddr, err = freeAddr(); err != nil {
			return err
		}
		if l, err = startLink(o.GatewayAddr, false, true); err != nil {
			return err
		}
		hr.Via = l.Addr().String()
		hPair, err := StartHAProxySNI(ctx, e.ps, e.bins.haproxy, filepath.Join(e.dir, o.Name), e.cert, []*Route{hr}, o)
		if err != nil {
			return err
		}
		e.tlsSources = append(e.tlsSources, tlsSource{setup: SetupHAProxySNI, resumption: res, deployment: "ttfb", pair: hPair, haproxy: true})
		targets = append(targets, ttfbTarget{SetupStunnel, resume, st.Entry}, ttfbTarget{SetupHAProxySNI, resume, hr.Entry})
	}
	// Strait: client proxy -> gateway -> WAN (UDP) -> gateway -> proxy -> app.
	svc := &StraitService{Name: "web", Port: 80, App: e.echo.Proxied.String()}
	if _, err := e.startStrait(ctx, "b", "/bench-b/", func(ingress string) (string, error) {
		_, err := startLink(ingress, true, false)
		if err != nil {
			return "", err
		}
		return links[len(links)-1].Addr().String(), nil
	}, svc); err != nil {
		return err
	}
	targets = append(targets, ttfbTarget{SetupStrait, false, svc.Entry})
	for _, t := range targets {
		if err := waitHTTP(ctx, t.addr, readyTimeout); err != nil {
			return err
		}
	}
	var errs []error
	for _, rtt := range []time.Duration{0, e.cfg.WANRTT} {
		for _, l := range links {
			if err := l.SetDelay(rtt / 2); err != nil {
				return fmt.Errorf("bench: wan: %w", err)
			}
		}
		name := fmt.Sprintf("ttfb_%dms_rtt_", rtt.Milliseconds())
		rows := map[bool][2]*Metric{
			false: {{Bench: name + "p50", Unit: "ms", Values: map[string]float64{}}, {Bench: name + "p90", Unit: "ms", Values: map[string]float64{}}},
			true: {{Bench: name + "resumption_on_p50", Unit: "ms", Values: map[string]float64{}, Note: straitNoResumption},
				{Bench: name + "resumption_on_p90", Unit: "ms", Values: map[string]float64{}, Note: straitNoResumption}},
		}
		for _, t := range targets {
			if t.resume && rtt == 0 {
				continue // resumption's gain shows at WANRTT; fewer rows
			}
			// Warm up: session caches (when resumption is on), the pooled
			// QUIC connection.
			if _, err := TTFB(ctx, t.addr, 3, 10*time.Second); err != nil {
				errs = append(errs, err)
				continue
			}
			s, err := TTFB(ctx, t.addr, e.cfg.TTFBConns, 10*time.Second)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			e.log.Info("ttfb", "setup", t.setup, "resumption", t.resume, "rtt", rtt, "p50", percentile(s, 0.5), "p90", percentile(s, 0.9))
			rows[t.resume][0].Values[t.setup] = ms(percentile(s, 0.5))
			rows[t.resume][1].Values[t.setup] = ms(percentile(s, 0.9))
		}
		e.add(*rows[false][0])
		e.add(*rows[false][1])
		if rtt != 0 {
			e.add(*rows[true][0])
			e.add(*rows[true][1])
		}
	}
	return errors.Join(errs...)
}
