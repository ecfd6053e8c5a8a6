package proxy

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/strait-mesh/strait/federation"
)

// Upstream is an explicit outbound listener: connections accepted on
// ListenAddr go to port Port of Service.
type Upstream struct {
	// Service is the global service to reach.
	Service federation.ServiceKey
	// Port is the service port, 1-65535.
	Port uint16
	// Cluster pins the destination cluster; "" lets the proxy choose (local
	// endpoints first, then whichever cluster the gateway picks).
	Cluster string
	// ListenAddr is the host:port the application connects to. Port 0 picks
	// a free port; Proxy.UpstreamAddr tells which.
	ListenAddr string
}

// Name identifies the upstream in logs and metrics, in the CLI form without
// the listen address: "payments.default:9000" or
// "payments.default.west:9000".
func (u Upstream) Name() string {
	s := u.Service.String()
	if u.Cluster != "" {
		s += "." + u.Cluster
	}
	return s + ":" + strconv.Itoa(int(u.Port))
}

// String is the CLI form, as ParseUpstream reads it.
func (u Upstream) String() string { return u.Name() + "=" + u.ListenAddr }

// ParseUpstream reads the CLI form of an upstream:
//
//	<service>.<namespace>[.<cluster>]:<port>=<listen host:port>
//
// for example "payments.default:9000=127.0.0.1:19000".
func ParseUpstream(s string) (Upstream, error) {
	dest, listen, ok := strings.Cut(s, "=")
	if !ok {
		return Upstream{}, wrapf("upstream %q: want <service>.<namespace>[.<cluster>]:<port>=<host:port>", s)
	}
	name, portStr, ok := strings.Cut(dest, ":")
	if !ok {
		return Upstream{}, wrapf("upstream %q: missing :<port>", s)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || port == 0 {
		return Upstream{}, wrapf("upstream %q: port %q is not 1-65535", s, portStr)
	}
	labels := strings.Split(name, ".")
	if len(labels) != 2 && len(labels) != 3 {
		return Upstream{}, wrapf("upstream %q: want <service>.<namespace>[.<cluster>]", s)
	}
	u := Upstream{Service: federation.ServiceKey{Name: labels[0], Namespace: labels[1]}, Port: uint16(port), ListenAddr: listen}
	if len(labels) == 3 {
		u.Cluster = labels[2]
	}
	if err := u.validate(); err != nil {
		return Upstream{}, wrapf("upstream %q: %w", s, err)
	}
	return u, nil
}

// validate checks one upstream.
func (u Upstream) validate() error {
	for _, l := range []string{u.Service.Name, u.Service.Namespace} {
		if err := federation.ValidateLabel(l); err != nil {
			return err
		}
	}
	if u.Cluster != "" && u.Cluster != federation.AnyCluster {
		if err := federation.ValidateLabel(u.Cluster); err != nil {
			return err
		}
	}
	if u.Port == 0 {
		return fmt.Errorf("port must be 1-65535")
	}
	if _, _, err := net.SplitHostPort(u.ListenAddr); err != nil {
		return fmt.Errorf("listen address %q: %w", u.ListenAddr, err)
	}
	return nil
}
