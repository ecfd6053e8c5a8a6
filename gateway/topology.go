package gateway

import (
	"context"
	_ "embed"
	"encoding/json"
	"net/http"
	"net/url"
	"sort"
	"sync"
	"time"

	"github.com/strait-mesh/strait/federation"
)

// topologyFetchTimeout bounds the read of another gateway's /links for the
// topology: a gateway that does not answer within it is drawn down.
const topologyFetchTimeout = 800 * time.Millisecond

//go:embed topology.html
var topologyPage []byte

// Topology is the /topology.json document: the federation as this gateway
// sees it, with every gateway's links.
type Topology struct {
	GeneratedAt time.Time         `json:"generatedAt"`
	Cluster     string            `json:"cluster"`
	Gateway     string            `json:"gateway"`
	Revision    int64             `json:"revision"`
	Clusters    []TopologyCluster `json:"clusters"`
	Links       []TopologyLink    `json:"links"`
	Services    []TopologyService `json:"services"`
}

// TopologyCluster is a cluster and its gateways.
type TopologyCluster struct {
	Name        string            `json:"name"`
	TrustDomain string            `json:"trustDomain"`
	Alive       bool              `json:"alive"`
	Gateways    []TopologyGateway `json:"gateways"`
}

// TopologyGateway is a gateway record and whether its admin port answered.
type TopologyGateway struct {
	ID       string `json:"id"`
	Address  string `json:"address"`
	Admin    string `json:"admin"`
	Region   string `json:"region,omitempty"`
	Zone     string `json:"zone,omitempty"`
	Draining bool   `json:"draining"`
	// Up: its admin port answered /links just now.
	Up    bool   `json:"up"`
	Error string `json:"error,omitempty"`
}

// Link health values.
const (
	HealthOK   = "ok"   // the source holds a live QUIC connection to the target
	HealthIdle = "idle" // no connection yet, no failure
	HealthDown = "down" // an end does not answer, or the last dial failed
)

// TopologyLink is the link from one gateway to a gateway of another
// cluster.
type TopologyLink struct {
	From       string  `json:"from"` // cluster/id
	To         string  `json:"to"`
	Health     string  `json:"health"`
	RTTSeconds float64 `json:"rttSeconds,omitempty"` // p50
	Loss       float64 `json:"loss"`
	Streams    uint64  `json:"streams"`
	LastError  string  `json:"lastError,omitempty"`
}

// TopologyService is an exported service.
type TopologyService struct {
	Namespace string           `json:"namespace"`
	Name      string           `json:"name"`
	Exports   []TopologyExport `json:"exports"`
}

// TopologyExport is one cluster's export of a service.
type TopologyExport struct {
	Cluster   string   `json:"cluster"`
	Ports     []uint32 `json:"ports"`
	Consumers []string `json:"consumers"`
	Endpoints []string `json:"endpoints"` // ready endpoints as id@address
}

// handleTopologyPage serves the topology page: one HTML document with its
// script and style inline, which polls /topology.json.
func (g *Gateway) handleTopologyPage(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'")
	_, _ = w.Write(topologyPage)
}

func (g *Gateway) handleTopology(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(g.Topology(r.Context()))
}

// Topology reads the federation from the snapshot and every gateway's
// links from its admin port.
func (g *Gateway) Topology(ctx context.Context) Topology {
	snap := g.cfg.Snapshots.Snapshot()
	t := Topology{GeneratedAt: g.cfg.Now(), Cluster: g.cfg.Cluster, Gateway: g.cfg.ID, Revision: snap.Revision(),
		Clusters: []TopologyCluster{}, Links: []TopologyLink{}, Services: []TopologyService{}}
	links := g.gatherLinks(ctx, snap)
	for _, c := range snap.Clusters() {
		tc := TopologyCluster{Name: c, TrustDomain: snap.TrustDomain(c), Alive: snap.ClusterAlive(c), Gateways: []TopologyGateway{}}
		for _, gw := range snap.Gateways(c) {
			key := c + "/" + gw.GetId()
			res := links[key]
			tc.Gateways = append(tc.Gateways, TopologyGateway{ID: gw.GetId(), Address: gw.GetAddress(), Admin: gw.GetAdminAddress(),
				Region: gw.GetRegion(), Zone: gw.GetZone(), Draining: gw.GetDraining(), Up: res.err == "", Error: res.err})
		}
		t.Clusters = append(t.Clusters, tc)
	}
	for _, from := range t.Clusters {
		for _, a := range from.Gateways {
			for _, to := range t.Clusters {
				if to.Name == from.Name {
					continue
				}
				for _, b := range to.Gateways {
					t.Links = append(t.Links, linkBetween(from.Name, a, to.Name, b, links[from.Name+"/"+a.ID].links))
				}
			}
		}
	}
	for _, key := range snap.Services() {
		ts := TopologyService{Namespace: key.Namespace, Name: key.Name, Exports: []TopologyExport{}}
		for _, e := range snap.Exports(key) {
			te := TopologyExport{Cluster: e.GetCluster(), Consumers: append([]string{}, e.GetConsumers()...), Ports: []uint32{}, Endpoints: []string{}}
			for _, p := range e.GetPorts() {
				te.Ports = append(te.Ports, p.GetPort())
			}
			for _, ep := range snap.ReadyEndpoints(e.GetCluster(), key) {
				te.Endpoints = append(te.Endpoints, ep.GetId()+"@"+ep.GetAddress())
			}
			ts.Exports = append(ts.Exports, te)
		}
		t.Services = append(t.Services, ts)
	}
	return t
}

func linkBetween(fromCluster string, a TopologyGateway, toCluster string, b TopologyGateway, links []LinkStatus) TopologyLink {
	l := TopologyLink{From: fromCluster + "/" + a.ID, To: toCluster + "/" + b.ID, Health: HealthIdle}
	for _, s := range links {
		if s.Cluster == toCluster && s.Gateway == b.ID {
			l.RTTSeconds, l.Loss, l.Streams, l.LastError = s.RTTP50, s.Loss, s.Streams, s.LastError
			switch {
			case s.Alive:
				l.Health = HealthOK
			case s.LastError != "":
				l.Health = HealthDown
			}
		}
	}
	if !a.Up || !b.Up {
		l.Health = HealthDown
	}
	return l
}

type linksResult struct {
	links []LinkStatus
	err   string
}

// gatherLinks reads every gateway's links: this gateway's directly, the
// others' from their admin ports, concurrently.
func (g *Gateway) gatherLinks(ctx context.Context, snap *federation.Snapshot) map[string]linksResult {
	ctx, cancel := context.WithTimeout(ctx, topologyFetchTimeout)
	defer cancel()
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	var (
		mu  sync.Mutex
		wg  sync.WaitGroup
		out = map[string]linksResult{}
	)
	for _, c := range snap.Clusters() {
		for _, gw := range snap.Gateways(c) {
			key := c + "/" + gw.GetId()
			if c == g.cfg.Cluster && gw.GetId() == g.cfg.ID {
				out[key] = linksResult{links: g.links.status()}
				continue
			}
			wg.Go(func() {
				res := fetchGatewayLinks(ctx, client, gw.GetAdminAddress())
				mu.Lock()
				out[key] = res
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	for k, v := range out {
		sort.Slice(v.links, func(i, j int) bool {
			return v.links[i].Cluster+v.links[i].Gateway < v.links[j].Cluster+v.links[j].Gateway
		})
		out[k] = v
	}
	return out
}

func fetchGatewayLinks(ctx context.Context, client *http.Client, admin string) linksResult {
	if admin == "" {
		return linksResult{err: "no admin address"}
	}
	u := (&url.URL{Scheme: "http", Host: admin, Path: "/links"}).String()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return linksResult{err: err.Error()}
	}
	resp, err := client.Do(req)
	if err != nil {
		return linksResult{err: err.Error()}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return linksResult{err: resp.Status}
	}
	var l Links
	if err := json.NewDecoder(http.MaxBytesReader(nil, resp.Body, 1<<20)).Decode(&l); err != nil {
		return linksResult{err: err.Error()}
	}
	return linksResult{links: l.Links}
}
