package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"
	"time"

	"github.com/strait-mesh/strait/proxy/proxyproto"
)

// healthLoop checks the application every interval and keeps the endpoint's
// readiness in step, until ctx ends.
func (p *Proxy) healthLoop(ctx context.Context) error {
	hc := p.cfg.HealthCheck
	client := p.healthClient()
	defer client.CloseIdleConnections()
	first := true
	fails := 0
	ticker := time.NewTicker(hc.Interval)
	defer ticker.Stop()
	for {
		err := p.checkApp(ctx, client)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			fails = 0
		} else {
			fails++
		}
		// The first check decides at once; later a refused connection does
		// too, while other failures must repeat FailureThreshold times.
		if err == nil || first || fails >= hc.FailureThreshold || errors.Is(err, syscall.ECONNREFUSED) {
			p.recordHealth(err, first)
		} else {
			p.metrics.healthChecks.WithLabelValues("fail").Inc()
			p.log.Debug("application health check failed", logAddr, p.cfg.AppAddr, logErr, err, "consecutive", fails)
		}
		first = false
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
}

func (p *Proxy) recordHealth(err error, first bool) {
	healthy := err == nil
	if healthy {
		p.metrics.healthChecks.WithLabelValues("ok").Inc()
		p.metrics.appHealthy.Set(1)
	} else {
		p.metrics.healthChecks.WithLabelValues("fail").Inc()
		p.metrics.appHealthy.Set(0)
	}
	wasReady := !first && p.registry.isReady()
	if !healthy && (first || wasReady) {
		p.log.Warn("application unhealthy", logAddr, p.cfg.AppAddr, logErr, err)
	}
	p.registry.setReady(healthy, first)
}

func (r *registration) isReady() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ep.GetReady()
}

// checkApp runs one health check.
func (p *Proxy) checkApp(ctx context.Context, client *http.Client) error {
	hc := p.cfg.HealthCheck
	ctx, cancel := context.WithTimeout(ctx, hc.Timeout)
	defer cancel()
	if hc.HTTPPath == "" {
		c, err := p.dialApp(ctx)
		if err != nil {
			return err
		}
		return c.Close()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.cfg.AppAddr+hc.HTTPPath, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("GET %s: status %d", hc.HTTPPath, resp.StatusCode)
	}
	return nil
}

// healthClient is an HTTP client whose connections go to the application
// and start with a LOCAL PROXY header.
func (p *Proxy) healthClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext:       func(ctx context.Context, _, _ string) (net.Conn, error) { return p.dialApp(ctx) },
		DisableKeepAlives: true,
		Proxy:             nil,
	}}
}

// dialApp connects to the application for a health check and sends a LOCAL
// header (unless Config.NoProxyHeader).
func (p *Proxy) dialApp(ctx context.Context) (net.Conn, error) {
	c, err := p.dialer.DialContext(ctx, "tcp", p.cfg.AppAddr)
	if err != nil || p.cfg.NoProxyHeader {
		return c, err
	}
	h := proxyproto.Header{Command: proxyproto.Local}
	if _, err := h.WriteTo(c); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}
