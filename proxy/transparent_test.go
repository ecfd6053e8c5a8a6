package proxy

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/strait-mesh/strait/internal/demo"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
	"github.com/strait-mesh/strait/proxy/capture"
	"github.com/strait-mesh/strait/proxy/capture/nft"
	"github.com/strait-mesh/strait/proxy/dns"
	"github.com/strait-mesh/strait/proxy/internal/netnstest"
)

// The pod's resolver, as its resolv.conf names it: queries to it are
// captured, so it needs no server.
const podNameserver = "10.255.0.53"

// plainAddr is a non-service destination on this "pod", reached through the
// proxy's pass-through.
const plainAddr = "10.99.0.1"

// TestTransparentCapture: in a pod namespace with capture rules installed,
// an unmodified curl reaches a service of its own cluster and one of a
// remote cluster by their clusterset.local names, and a plain address
// through pass-through; after cleanup no rule is left.
func TestTransparentCapture(t *testing.T) {
	if !netnstest.Run(t, netnstest.Options{
		Setup:      []string{"route add default dev lo", "addr add " + plainAddr + "/32 dev lo"},
		ResolvConf: "nameserver " + podNameserver + "\noptions timeout:2 attempts:2\n",
	}) {
		return
	}
	netnstest.RequireCommand(t, "curl")
	ctx := context.Background()

	w := newWorld(t)
	gw := passthroughGateway(t)
	w.reg.setBase(gateway(west, "gw1", gw.Addr()), gateway(east, "gw1", ""),
		exportService(west, "web", 8080), exportService(east, "hello", 8080, "spiffe://"+westTD))
	w.httpService(west, "web")
	helloProxy := w.httpService(east, "hello")
	gw.forwardTo(helloProxy.InboundAddr().String())

	resolver, err := dns.New(dns.Config{Addr: "127.0.0.1:0", Upstream: "127.0.0.1:9", Services: w.reg.src, Mark: capture.DefaultMark})
	if err != nil {
		t.Fatal(err)
	}
	dctx, stopDNS := context.WithCancel(ctx)
	dnsDone := make(chan error, 1)
	go func() { dnsDone <- resolver.Run(dctx) }()
	defer func() { stopDNS(); <-dnsDone }()
	<-resolver.Ready()

	pod := w.run(Config{Cluster: west, ServiceAccount: "client", Mark: capture.DefaultMark,
		Transparent: &Transparent{ListenAddr: "127.0.0.1:0", Services: resolver.VIPs()},
		SVIDs:       w.svid(west, "client")})

	plain := &http.Server{Handler: http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) { fmt.Fprintln(rw, "plain") })}
	pln, err := net.Listen("tcp", plainAddr+":8081")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = plain.Serve(pln) }()
	defer plain.Close()

	cfg := capture.Config{
		OutboundPort: uint16(pod.TransparentAddr().(*net.TCPAddr).Port),
		DNSPort:      uint16(resolver.Addr().(*net.UDPAddr).Port),
	}
	if err := nft.Install(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = nft.Cleanup(ctx, cfg) }()

	tests := []struct{ url, want string }{
		{"http://web.default.svc.clusterset.local:8080/", "hello from cluster west; you are " + westClientID + "\n"},
		{"http://hello.default.svc.clusterset.local:8080/", "hello from cluster east; you are " + westClientID + "\n"},
		{"http://" + plainAddr + ":8081/", "plain\n"},
	}
	for _, tt := range tests {
		out, err := exec.CommandContext(ctx, "curl", "-sS", "--max-time", "10", tt.url).CombinedOutput()
		if err != nil || string(out) != tt.want {
			t.Errorf("curl %s = %q, %v; want %q", tt.url, out, err, tt.want)
		}
	}
	if n := gw.accepted.Load(); n != 1 {
		t.Errorf("gateway relayed %d connections, want 1 (the remote service)", n)
	}

	for range 2 {
		if err := nft.Cleanup(ctx, cfg); err != nil {
			t.Fatal(err)
		}
	}
	if rules, err := nft.List(ctx); err != nil || rules != nil {
		t.Errorf("after cleanup: %v\n%s", err, strings.Join(rules, "\n"))
	}
}

// exportService is an Export record of <service>.default on port.
func exportService(cluster, service string, port uint32, consumers ...string) *straitv1.Export {
	return &straitv1.Export{Cluster: cluster, Namespace: "default", Service: service, Consumers: consumers,
		Ports:     []*straitv1.ServicePort{{Name: "http", Port: port, Protocol: straitv1.Protocol_PROTOCOL_TCP}},
		CreatedAt: timestamppb.New(time.Unix(1000, 0))}
}

// httpService runs the demo HTTP app of a cluster behind a proxy for
// <service>.default and waits until its endpoint is ready.
func (w *world) httpService(cluster, service string) *Proxy {
	w.t.Helper()
	app := &demo.HTTPServer{Cluster: cluster}
	ln := listen(w.t)
	go func() { _ = app.Serve(ln) }()
	w.t.Cleanup(func() { _ = app.Close() })
	p := w.run(Config{Cluster: cluster, Service: service, ID: service + "-0", InboundListenAddr: "127.0.0.1:0",
		AppAddr: ln.Addr().String(), HealthCheck: HealthCheck{Interval: 50 * time.Millisecond, HTTPPath: "/healthz"},
		SVIDs: w.svid(cluster, service)})
	key := "/strait/v1/clusters/" + cluster + "/endpoints/default/" + service + "/" + service + "-0"
	eventually(w.t, 5*time.Second, service+" ready", func() bool { return w.reg.ready(key) })
	return p
}
