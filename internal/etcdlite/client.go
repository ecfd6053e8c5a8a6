package etcdlite

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/status"
)

// Config configures a Client; its fields are those of clientv3.Config that
// package federation sets.
type Config struct {
	// Endpoints are the etcd client URLs (http, https, unix or unixs).
	// Required.
	Endpoints []string
	// DialTimeout bounds each connection attempt (as gRPC's
	// MinConnectTimeout) and the wait for the first keepalive answer of a
	// lease (plus a second). New does not wait for a connection. Zero means
	// gRPC's default (20s) and a first keepalive wait of 5s.
	DialTimeout time.Duration
	// DialKeepAliveTime is the interval of gRPC keepalive pings, and
	// DialKeepAliveTimeout how long one may go unanswered before the
	// connection is closed. Zero means no pings.
	DialKeepAliveTime, DialKeepAliveTimeout time.Duration
	// Logger is accepted for clientv3's sake; the client logs nothing.
	Logger *Logger
	// DialOptions are added to the gRPC connection's options.
	DialOptions []grpc.DialOption
	// TLS, when set, secures the connections (https and unixs endpoints
	// get TLS with Go's defaults without it).
	TLS *tls.Config
}

// Logger stands for clientv3's *zap.Logger in Config; the client logs
// nothing.
type Logger struct{}

// Client is an etcd client over one gRPC connection balanced over the
// endpoints. Its methods are safe for concurrent use.
type Client struct {
	conn *grpc.ClientConn

	// ctx ends when Close is called: watches and keepalives end with it.
	ctx    context.Context
	cancel context.CancelFunc

	firstKeepAliveTimeout time.Duration

	mu      sync.Mutex
	streams map[*watchStream]struct{} // the open watch streams
}

// Call options of every RPC: the client's codec, and as clientv3 sets
// them, wait for a connection instead of failing while one is being made,
// and take any response size.
var callOpts = []grpc.CallOption{
	grpc.ForceCodec(codec{}),
	grpc.WaitForReady(true),
	grpc.MaxCallRecvMsgSize(math.MaxInt32),
	grpc.MaxCallSendMsgSize(2 << 20),
}

// invoke makes a unary call.
func (c *Client) invoke(ctx context.Context, method string, req []byte, resp response) error {
	return toErr(ctx, c.conn.Invoke(ctx, method, rawRequest(req), resp, callOpts...))
}

// resolverSeq numbers the resolver scheme of each client, so that clients
// never share one.
var resolverSeq atomic.Uint64

// New returns a client of cfg's endpoints. It does not wait for a
// connection: calls wait for one, bounded by their context.
func New(cfg Config) (*Client, error) {
	addrs, secure, err := parseEndpoints(cfg.Endpoints)
	if err != nil {
		return nil, err
	}
	var creds credentials.TransportCredentials
	switch {
	case cfg.TLS != nil:
		creds = credentials.NewTLS(cfg.TLS.Clone())
	case secure:
		creds = credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12})
	default:
		creds = insecure.NewCredentials()
	}
	if cfg.TLS != nil && !secure {
		return nil, errors.New("etcdlite: TLS is configured but the endpoints are plain http")
	}
	r := manual.NewBuilderWithScheme(fmt.Sprintf("etcdlite-%d", resolverSeq.Add(1)))
	r.InitialState(resolver.State{Addresses: addrs})
	opts := []grpc.DialOption{
		grpc.WithResolvers(r),
		grpc.WithTransportCredentials(creds),
		grpc.WithContextDialer(dial),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`),
	}
	if cfg.DialTimeout > 0 {
		opts = append(opts, grpc.WithConnectParams(grpc.ConnectParams{MinConnectTimeout: cfg.DialTimeout}))
	}
	if cfg.DialKeepAliveTime > 0 {
		opts = append(opts, grpc.WithKeepaliveParams(keepalive.ClientParameters{
			Time: cfg.DialKeepAliveTime, Timeout: cfg.DialKeepAliveTimeout,
		}))
	}
	opts = append(opts, cfg.DialOptions...)
	conn, err := grpc.NewClient(r.Scheme()+":///etcd", opts...)
	if err != nil {
		return nil, fmt.Errorf("etcdlite: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Client{
		conn: conn, ctx: ctx, cancel: cancel, streams: map[*watchStream]struct{}{},
		firstKeepAliveTimeout: cfg.DialTimeout + time.Second,
	}
	if cfg.DialTimeout == 0 {
		c.firstKeepAliveTimeout = 5 * time.Second
	}
	return c, nil
}

// parseEndpoints turns etcd client URLs into gRPC addresses: host:port, or
// "unix:" and a path. secure reports TLS schemes; a mix is refused.
func parseEndpoints(eps []string) (addrs []resolver.Address, secure bool, err error) {
	if len(eps) == 0 {
		return nil, false, errors.New("etcdlite: no endpoints")
	}
	plain := false
	for _, ep := range eps {
		u, err := url.Parse(ep)
		if err != nil {
			return nil, false, fmt.Errorf("etcdlite: endpoint %q: %w", ep, err)
		}
		var a resolver.Address
		switch u.Scheme {
		case "http", "https":
			if u.Host == "" {
				return nil, false, fmt.Errorf("etcdlite: endpoint %q has no host", ep)
			}
			a = resolver.Address{Addr: u.Host, ServerName: u.Hostname()}
		case "unix", "unixs":
			path := u.Host + u.Path
			if path == "" {
				return nil, false, fmt.Errorf("etcdlite: endpoint %q has no path", ep)
			}
			a = resolver.Address{Addr: "unix:" + path, ServerName: "localhost"}
		default:
			return nil, false, fmt.Errorf("etcdlite: endpoint %q: scheme must be http, https, unix or unixs", ep)
		}
		if u.Scheme == "https" || u.Scheme == "unixs" {
			secure = true
		} else {
			plain = true
		}
		addrs = append(addrs, a)
	}
	if secure && plain {
		return nil, false, errors.New("etcdlite: endpoints mix plain and TLS schemes")
	}
	return addrs, secure, nil
}

// dial connects to a gRPC address of parseEndpoints, without the proxy
// from the environment that gRPC's own dialer would use (as clientv3).
func dial(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		return d.DialContext(ctx, "unix", path)
	}
	return d.DialContext(ctx, "tcp", addr)
}

// Close ends the client's watches and keepalives and closes its
// connection.
func (c *Client) Close() error {
	c.cancel()
	if err := c.conn.Close(); err != nil && status.Code(err) != codes.Canceled {
		return fmt.Errorf("etcdlite: %w", err)
	}
	return nil
}

// WithRequireLeader makes the calls and watches made with the returned
// context fail when the etcd member they reach has no leader, instead of
// waiting for one.
func WithRequireLeader(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, rpctypes.MetadataRequireLeaderKey, rpctypes.MetadataHasLeader)
}

// toErr is err as clientv3 returns it: etcd's errors as the rpctypes
// values that callers compare with errors.Is, and the context's error when
// the call ended because ctx did.
func toErr(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	err = rpctypes.Error(err)
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		return err
	}
	switch status.Code(err) {
	case codes.Canceled, codes.DeadlineExceeded:
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return err
}
