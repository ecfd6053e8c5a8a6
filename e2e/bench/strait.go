package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/strait-mesh/strait/federation"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// Cluster names and trust domains of the benchmark's federation.
const (
	eastCluster = "east"
	westCluster = "west"
	eastTD      = "east.bench"
	westTD      = "west.bench"
)

// StraitService is a service exported by the west cluster and reached from
// the east one.
type StraitService struct {
	Name string
	Port uint32
	// App is the address of the app behind the west proxy; it receives a
	// PROXY v2 header first unless NoProxyHeader is set.
	App string
	// NoProxyHeader makes the west proxy connect to an app that does not
	// read the PROXY v2 header (iperf3's server) without one.
	NoProxyHeader bool
	// Entry is the east proxy's upstream listener, filled in by StartStrait.
	Entry string
}

// StraitConfig describes one two-cluster deployment of real processes.
type StraitConfig struct {
	// Bin is the strait binary (the gateways), ProxyBin the strait-proxy
	// sidecar binary (the proxies); Dir holds their configs and CA dirs.
	Bin, ProxyBin, Dir string
	// Etcd is the client URL; Prefix the keyspace prefix, which keeps two
	// deployments on one etcd apart.
	Etcd, Prefix string
	// Name prefixes the process names.
	Name string
	// WestIngressVia, when non-nil, is called with the west gateway's
	// ingress address and returns the address the gateway advertises
	// instead (a WAN link in front of it).
	WestIngressVia func(ingress string) (string, error)
	Services       []*StraitService
	// Sessions, when set, is the proxies' "sessions" setting (on, off).
	Sessions string
	// SessionPipeline, when set, is their "sessionPipeline" setting.
	SessionPipeline string
}

// Strait is a started deployment: a gateway per cluster, a proxy per west
// service and one client proxy in the east.
type Strait struct {
	EastGW, WestGW *Proc
	WestProxies    map[string]*Proc
	EastProxy      *Proc
	// Admin is the admin address (/metrics, /debug/pprof/) of every
	// process.
	Admin map[*Proc]string
}

// adminAddr reads the admin address from the line of p's JSON log that
// holds marker, under key.
func adminAddr(ctx context.Context, p *Proc, marker, key string) (string, error) {
	line, err := p.WaitLog(ctx, marker, readyTimeout)
	if err != nil {
		return "", err
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(line), &v); err != nil {
		return "", fmt.Errorf("bench: %s: log line %q: %w", p.Name, line, err)
	}
	a, _ := v[key].(string)
	if a == "" {
		return "", fmt.Errorf("bench: %s: no %s in %q", p.Name, key, line)
	}
	return a, nil
}

type listen struct {
	Listen    string `json:"listen,omitempty"`
	Advertise string `json:"advertise,omitempty"`
}

func (c StraitConfig) etcd() map[string]any {
	return map[string]any{"endpoints": []string{c.Etcd}, "prefix": c.Prefix}
}

func (c StraitConfig) identity(td string) map[string]any {
	return map[string]any{"trustDomain": td, "caDir": filepath.Join(c.Dir, td+"-ca")}
}

func (c StraitConfig) writeConfig(name string, v any) (string, error) {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return "", err
	}
	path := filepath.Join(c.Dir, name+".json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return "", fmt.Errorf("bench: strait config: %w", err)
	}
	return path, nil
}

// StartStrait starts the deployment, writes the exports and waits until each
// service answers through the whole path.
func StartStrait(ctx context.Context, ps *Procs, cli *clientv3.Client, c StraitConfig) (*Strait, error) {
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("bench: strait: %w", err)
	}
	s := &Strait{WestProxies: map[string]*Proc{}, Admin: map[*Proc]string{}}
	var err error
	if s.WestGW, err = c.startGateway(ctx, ps, westCluster, westTD); err != nil {
		return nil, err
	}
	if s.EastGW, err = c.startGateway(ctx, ps, eastCluster, eastTD); err != nil {
		return nil, err
	}
	store := federation.NewStore(cli, federation.Keyspace{Prefix: c.Prefix})
	for _, svc := range c.Services {
		exp := &straitv1.Export{Cluster: westCluster, Namespace: "default", Service: svc.Name,
			Ports:     []*straitv1.ServicePort{{Name: "tcp", Port: svc.Port, Protocol: straitv1.Protocol_PROTOCOL_TCP}},
			Consumers: []string{"spiffe://" + eastTD}}
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := store.PutExport(pctx, exp)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("bench: strait: export %s: %w", svc.Name, err)
		}
		p, err := c.startWestProxy(ps, svc)
		if err != nil {
			return nil, err
		}
		if _, err := p.WaitLog(ctx, `"ready":true`, readyTimeout); err != nil {
			return nil, err
		}
		if s.Admin[p], err = adminAddr(ctx, p, `"msg":"admin server"`, "addr"); err != nil {
			return nil, err
		}
		s.WestProxies[svc.Name] = p
	}
	if s.EastProxy, err = c.startEastProxy(ps); err != nil {
		return nil, err
	}
	if _, err := s.EastProxy.WaitLog(ctx, "proxy started", readyTimeout); err != nil {
		return nil, err
	}
	if s.Admin[s.EastProxy], err = adminAddr(ctx, s.EastProxy, `"msg":"admin server"`, "addr"); err != nil {
		return nil, err
	}
	for _, gw := range []*Proc{s.EastGW, s.WestGW} {
		if s.Admin[gw], err = adminAddr(ctx, gw, "gateway ready", "admin"); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (c StraitConfig) startGateway(ctx context.Context, ps *Procs, cluster, td string) (*Proc, error) {
	ingress, err := freeAddr()
	if err != nil {
		return nil, err
	}
	in := listen{Listen: ingress}
	if cluster == westCluster && c.WestIngressVia != nil {
		if in.Advertise, err = c.WestIngressVia(ingress); err != nil {
			return nil, err
		}
	}
	path, err := c.writeConfig(c.Name+"-gw-"+cluster, map[string]any{
		"cluster": cluster, "id": "gw-" + cluster,
		"etcd": c.etcd(), "identity": c.identity(td),
		"ingress": in, "egress": listen{Listen: "127.0.0.1:0"}, "admin": listen{Listen: "127.0.0.1:0"},
		"drainTimeout": "1s", "pprof": true,
		// The proxies listen on loopback: opt in.
		"endpointCIDRs": []string{"127.0.0.0/8"},
	})
	if err != nil {
		return nil, err
	}
	p, err := ps.Start(c.Name+"-gw-"+cluster, c.Bin, "gateway", "--config", path)
	if err != nil {
		return nil, err
	}
	if _, err := p.WaitLog(ctx, "gateway ready", readyTimeout); err != nil {
		return nil, err
	}
	return p, nil
}

func (c StraitConfig) startWestProxy(ps *Procs, svc *StraitService) (*Proc, error) {
	name := c.Name + "-proxy-" + svc.Name
	path, err := c.writeConfig(name, map[string]any{
		"cluster": westCluster, "service": svc.Name, "id": svc.Name + "-1",
		"etcd": c.etcd(), "identity": c.identity(westTD),
		"inbound": listen{Listen: "127.0.0.1:0"}, "app": svc.App,
		"ports":         []map[string]any{{"name": "tcp", "port": svc.Port}},
		"drainTimeout":  "1s",
		"noProxyHeader": svc.NoProxyHeader,
		"admin":         listen{Listen: "127.0.0.1:0"}, "pprof": true,
		"sessions": c.Sessions, "sessionPipeline": c.SessionPipeline,
	})
	if err != nil {
		return nil, err
	}
	return ps.Start(name, c.ProxyBin, "--config", path)
}

func (c StraitConfig) startEastProxy(ps *Procs) (*Proc, error) {
	var ups []string
	for _, svc := range c.Services {
		var err error
		if svc.Entry, err = freeAddr(); err != nil {
			return nil, err
		}
		ups = append(ups, fmt.Sprintf("%s.default:%d=%s", svc.Name, svc.Port, svc.Entry))
	}
	name := c.Name + "-proxy-client"
	path, err := c.writeConfig(name, map[string]any{
		"cluster": eastCluster, "serviceAccount": "client", "id": "client-1",
		"etcd": c.etcd(), "identity": c.identity(eastTD),
		"upstreams": ups, "drainTimeout": "1s",
		"admin": listen{Listen: "127.0.0.1:0"}, "pprof": true,
		"sessions": c.Sessions, "sessionPipeline": c.SessionPipeline,
	})
	if err != nil {
		return nil, err
	}
	return ps.Start(name, c.ProxyBin, "--config", path)
}

// StartEtcd starts a single-member etcd on loopback with its data in dir
// and returns its client URL.
func StartEtcd(ctx context.Context, ps *Procs, bin, dir string) (*Proc, string, error) {
	cport, err := freePort()
	if err != nil {
		return nil, "", err
	}
	pport, err := freePort()
	if err != nil {
		return nil, "", err
	}
	curl := fmt.Sprintf("http://127.0.0.1:%d", cport)
	purl := fmt.Sprintf("http://127.0.0.1:%d", pport)
	p, err := ps.Start("etcd", bin, "--name", "bench", "--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", curl, "--advertise-client-urls", curl,
		"--listen-peer-urls", purl, "--initial-advertise-peer-urls", purl,
		"--initial-cluster", "bench="+purl, "--log-level", "warn")
	if err != nil {
		return nil, "", err
	}
	if err := waitTCP(ctx, fmt.Sprintf("127.0.0.1:%d", cport), readyTimeout); err != nil {
		return nil, "", err
	}
	return p, curl, nil
}
