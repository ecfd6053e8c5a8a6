package proxycmd

import (
	"fmt"
	"time"

	"github.com/strait-mesh/strait/internal/cmdutil"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
	"github.com/strait-mesh/strait/proxy"
	"github.com/strait-mesh/strait/proxy/capture"
)

// File is the proxy's config file.
type File struct {
	// Cluster is the proxy's cluster. Required.
	Cluster string `json:"cluster"`
	// Namespace, Service and ServiceAccount describe the workload. Service
	// empty makes a client-only proxy. Namespace zero means "default";
	// ServiceAccount zero means Service.
	Namespace      string `json:"namespace,omitempty"`
	Service        string `json:"service,omitempty"`
	ServiceAccount string `json:"serviceAccount,omitempty"`
	// ID identifies the endpoint. Zero means the host name.
	ID     string `json:"id,omitempty"`
	Region string `json:"region,omitempty"`
	Zone   string `json:"zone,omitempty"`
	// Etcd and Identity as for the gateway.
	Etcd     cmdutil.EtcdFile     `json:"etcd"`
	Identity cmdutil.IdentityFile `json:"identity"`
	// Inbound is the mTLS listener other proxies dial.
	Inbound cmdutil.ListenFile `json:"inbound"`
	// App is the application's host:port.
	App string `json:"app,omitempty"`
	// NoProxyHeader stops the proxy from sending the PROXY protocol v2
	// header (which names the caller's SPIFFE ID) to an app that cannot
	// read it.
	NoProxyHeader bool `json:"noProxyHeader,omitempty"`
	// Transparent captures the pod's outbound connections and DNS (after
	// strait-init installed the rules in its network namespace):
	// <service>.<namespace>.svc.clusterset.local resolves to a virtual IP
	// that the proxy routes like an upstream.
	Transparent *TransparentFile `json:"transparent,omitempty"`
	// Ports are the service's ports, e.g. {name: http, port: 8080}.
	Ports []PortFile `json:"ports,omitempty"`
	// Upstreams are outbound listeners in the CLI form
	// "payments.default:9000=127.0.0.1:19000".
	Upstreams []string `json:"upstreams,omitempty"`
	// HealthCheck of the app: interval (zero means 5s), an optional HTTP
	// path (a TCP connect otherwise), and how many failed checks in a row
	// withdraw the endpoint (zero means 3; a refused connection withdraws
	// it at once).
	HealthCheck struct {
		Interval         cmdutil.Duration `json:"interval,omitempty"`
		HTTPPath         string           `json:"httpPath,omitempty"`
		FailureThreshold int              `json:"failureThreshold,omitempty"`
	} `json:"healthCheck,omitempty"`
	// Admin serves /metrics (with the Go runtime and process metrics) and
	// /healthz. Zero disables it.
	Admin cmdutil.ListenFile `json:"admin,omitempty"`
	// Pprof also serves the Go profiles under /debug/pprof/ on the admin
	// server (the --pprof flag sets it too). Zero means off.
	Pprof bool `json:"pprof,omitempty"`
	// SnapshotPath keeps the last federation snapshot.
	SnapshotPath string `json:"snapshotPath,omitempty"`
	// DrainTimeout bounds the drain on SIGTERM. Zero means 30s.
	DrainTimeout cmdutil.Duration `json:"drainTimeout,omitempty"`
	// LogLevel is debug, info, warn or error. Zero means info.
	LogLevel string `json:"logLevel,omitempty"`
	// Sessions is "on" to pool inner mTLS sessions (one round trip per new
	// connection to a warm destination; a peer without them gets one
	// handshake per connection) or "off". Zero means
	// proxy.DefaultSessionMode.
	Sessions string `json:"sessions,omitempty"`
	// SessionPipeline is "on" for a new stream's first bytes to go out
	// with the request that opens it on a session that heard from its peer
	// lately (one round trip to the answer), or "off" for them to wait for
	// the destination's answer (two round trips, as a new handshake costs):
	// then no byte of a new connection goes into a path that died
	// unnoticed, and a gateway's death fails no new connection. Only with
	// sessions on. Zero means proxy.DefaultPipelineMode (off: one round
	// trip less is the caller's choice, since bytes sent before the answer
	// cannot be retried when the path dies).
	SessionPipeline string `json:"sessionPipeline,omitempty"`
}

// TransparentFile is the transparent capture section.
type TransparentFile struct {
	// Listen is where captured TCP arrives. Zero means 127.0.0.1:15001.
	Listen string `json:"listen,omitempty"`
	// DNS is where the DNS responder listens. Zero means 127.0.0.1:15053.
	DNS string `json:"dns,omitempty"`
	// NoMark stops the proxy from marking its own connections with
	// capture.DefaultMark (SO_MARK, which needs CAP_NET_ADMIN): the capture
	// rules must then exclude the proxy's user or group instead, as an
	// injected pod's do (its proxy runs without capabilities, in its own
	// group). Zero means mark.
	NoMark bool `json:"noMark,omitempty"`
}

// mark is the SO_MARK of the proxy's own connections: none without
// transparent capture or with NoMark.
func (t *TransparentFile) mark() uint32 {
	if t == nil || t.NoMark {
		return 0
	}
	return capture.DefaultMark
}

// PortFile is one port of the service.
type PortFile struct {
	Name string `json:"name"`
	Port uint32 `json:"port"`
}

// Config is the proxy configuration the file describes, without what the
// process builds at run time (identity, snapshots, registry, logger).
func (f File) Config() (proxy.Config, error) {
	cfg := proxy.Config{
		Cluster: f.Cluster, Namespace: f.Namespace, Service: f.Service, ServiceAccount: f.ServiceAccount,
		ID: f.ID, Region: f.Region, Zone: f.Zone,
		InboundListenAddr: f.Inbound.Listen, InboundAdvertiseAddr: f.Inbound.Advertise, AppAddr: f.App,
		HealthCheck: proxy.HealthCheck{
			Interval: time.Duration(f.HealthCheck.Interval), HTTPPath: f.HealthCheck.HTTPPath,
			FailureThreshold: f.HealthCheck.FailureThreshold,
		},
		DrainTimeout: time.Duration(f.DrainTimeout), Keyspace: f.Etcd.Keyspace(),
		NoProxyHeader: f.NoProxyHeader,
	}
	switch f.Sessions {
	case "":
	case "on":
		cfg.Sessions = proxy.SessionsOn
	case "off":
		cfg.Sessions = proxy.SessionsOff
	default:
		return cfg, fmt.Errorf("sessions %q: want on or off", f.Sessions)
	}
	switch f.SessionPipeline {
	case "":
	case "on":
		cfg.SessionPipeline = proxy.PipelineOn
	case "off":
		cfg.SessionPipeline = proxy.PipelineOff
	default:
		return cfg, fmt.Errorf("sessionPipeline %q: want on or off", f.SessionPipeline)
	}
	for _, p := range f.Ports {
		cfg.Ports = append(cfg.Ports, &straitv1.ServicePort{Name: p.Name, Port: p.Port, Protocol: straitv1.Protocol_PROTOCOL_TCP})
	}
	for _, s := range f.Upstreams {
		u, err := proxy.ParseUpstream(s)
		if err != nil {
			return cfg, err
		}
		cfg.Upstreams = append(cfg.Upstreams, u)
	}
	return cfg, nil
}
