package federation

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"time"

	"github.com/hashicorp/go-multierror"
	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"

	clientv3 "github.com/strait-mesh/strait/internal/etcdclient"
)

// DefaultEndpoint is the etcd endpoint used when none is configured: where
// `strait dev` serves its embedded etcd.
const DefaultEndpoint = "http://127.0.0.1:2379"

// ClientConfig says how to reach etcd.
type ClientConfig struct {
	// Endpoints are the etcd client URLs. Zero means DefaultEndpoint.
	Endpoints []string
	// CertFile and KeyFile are the client certificate and key for TLS client
	// authentication; set both or neither. CAFile verifies the server; zero
	// means the system roots. Any of them turns TLS on.
	CertFile, KeyFile, CAFile string
	// DialTimeout bounds the first connection. Zero means 5s. Dial does
	// not wait for it: a client of an unreachable etcd is still returned,
	// so that a process can start and serve from its snapshot.
	DialTimeout time.Duration
	// KeepAlive is the interval of gRPC keepalive pings that detect a dead
	// connection. Zero means 10s.
	KeepAlive time.Duration
	// ReconnectMax caps the jittered exponential backoff between attempts
	// to reconnect to an endpoint. gRPC's own default grows to 120s, which
	// would delay convergence long after etcd returns from an outage. Zero
	// means 5s.
	ReconnectMax time.Duration
	// Logger is the etcd client's logger (a *zap.Logger, except in
	// strait-proxy, whose etcd client logs nothing: see
	// internal/etcdclient). Nil discards its logs.
	Logger *clientv3.Logger
}

func (c *ClientConfig) populate() {
	if len(c.Endpoints) == 0 {
		c.Endpoints = []string{DefaultEndpoint}
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = 5 * time.Second
	}
	if c.KeepAlive == 0 {
		c.KeepAlive = 10 * time.Second
	}
	if c.ReconnectMax == 0 {
		c.ReconnectMax = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = clientv3.NopLogger()
	}
}

func (c *ClientConfig) tlsEnabled() bool {
	return c.CertFile != "" || c.KeyFile != "" || c.CAFile != ""
}

func (c *ClientConfig) validate() error {
	var errs *multierror.Error
	if (c.CertFile == "") != (c.KeyFile == "") {
		errs = multierror.Append(errs, errors.New("client certificate and key must be set together"))
	}
	for _, ep := range c.Endpoints {
		u, err := url.Parse(ep)
		switch {
		case err != nil:
			errs = multierror.Append(errs, fmt.Errorf("endpoint %q: %w", ep, err))
		case u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "unix" && u.Scheme != "unixs":
			errs = multierror.Append(errs, fmt.Errorf("endpoint %q: scheme must be http or https", ep))
		case c.tlsEnabled() && u.Scheme == "http":
			errs = multierror.Append(errs, fmt.Errorf("endpoint %q is plain http but TLS is configured", ep))
		}
	}
	if c.DialTimeout < 0 || c.KeepAlive < 0 || c.ReconnectMax < 0 {
		errs = multierror.Append(errs, errors.New("timeouts must not be negative"))
	}
	if err := errs.ErrorOrNil(); err != nil {
		return fmt.Errorf("federation: etcd client config: %w", err)
	}
	return nil
}

// Dial returns an etcd client for cfg, with TLS client authentication when
// certificates are configured.
func Dial(cfg ClientConfig) (*clientv3.Client, error) {
	cfg.populate()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	ccfg := clientv3.Config{
		Endpoints:            cfg.Endpoints,
		DialTimeout:          cfg.DialTimeout,
		DialKeepAliveTime:    cfg.KeepAlive,
		DialKeepAliveTimeout: cfg.KeepAlive / 2,
		Logger:               cfg.Logger,
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: grpcbackoff.Config{
				BaseDelay:  min(250*time.Millisecond, cfg.ReconnectMax),
				Multiplier: 1.6,
				Jitter:     0.2,
				MaxDelay:   cfg.ReconnectMax,
			},
			MinConnectTimeout: cfg.DialTimeout,
		})},
	}
	if cfg.tlsEnabled() {
		tc, err := cfg.tlsConfig()
		if err != nil {
			return nil, err
		}
		ccfg.TLS = tc
	}
	cli, err := clientv3.New(ccfg)
	if err != nil {
		return nil, fmt.Errorf("federation: etcd client: %w", err)
	}
	return cli, nil
}

func (c *ClientConfig) tlsConfig() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("federation: etcd client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("federation: etcd CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("federation: etcd CA %s holds no PEM certificate", c.CAFile)
		}
		tc.RootCAs = pool
	}
	return tc, nil
}
