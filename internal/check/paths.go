package check

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/strait-mesh/strait/federation"
	"github.com/strait-mesh/strait/gateway"
	"github.com/strait-mesh/strait/gateway/probe"
	"github.com/strait-mesh/strait/trust"
)

// paths probes every ordered pair of clusters through the data path and
// verifies the signed statements.
func (r *runner) paths(ctx context.Context, snap *federation.Snapshot, bundles x509bundle.Source) []Result {
	clusters := snap.Clusters()
	type pair struct{ from, to string }
	var pairs []pair
	for _, from := range clusters {
		for _, to := range clusters {
			if from == to || (r.cfg.Cluster != "" && from != r.cfg.Cluster) {
				continue
			}
			pairs = append(pairs, pair{from, to})
		}
	}
	// Each goroutine writes its own element of a slice sized up front.
	results := make([]Result, len(pairs))
	var wg sync.WaitGroup
	for i, p := range pairs {
		wg.Go(func() {
			res := r.path(ctx, snap, p.from, p.to, bundles)
			res.Category, res.Check, res.Cluster = CategoryPath, p.from+" -> "+p.to, p.to
			results[i] = res
		})
	}
	wg.Wait()
	return results
}

// path asks a gateway of from (each in turn until one's admin port
// answers) to probe to.
func (r *runner) path(ctx context.Context, snap *federation.Snapshot, from, to string, bundles x509bundle.Source) Result {
	wantResponder, err1 := gatewayID(snap, to)
	wantCaller, err2 := gatewayID(snap, from)
	if err1 != nil || err2 != nil {
		return Result{Status: Fail, Layer: LayerIdentity, Message: fmt.Sprintf("no gateway identity: %v", firstErr(err1, err2))}
	}
	if r.cfg.Admin != "" && from == r.cfg.Cluster {
		nonce := make([]byte, probe.NonceSize)
		_, _ = rand.Read(nonce)
		pr, err := r.askProbe(ctx, r.cfg.Admin, to, nonce)
		if err != nil {
			return Result{Status: Fail, Message: fmt.Sprintf("the local gateway of %s did not answer on %s: %v", from, r.cfg.Admin, err),
				Hint: "--admin names the admin address of this host's gateway (its admin.listen)"}
		}
		return r.judgeProbe(pr, from, r.cfg.Admin, wantResponder, wantCaller, nonce, bundles)
	}
	var unreachable []string
	for _, gw := range snap.Gateways(from) {
		if gw.GetDraining() || gw.GetAdminAddress() == "" {
			continue
		}
		nonce := make([]byte, probe.NonceSize)
		_, _ = rand.Read(nonce)
		pr, err := r.askProbe(ctx, gw.GetAdminAddress(), to, nonce)
		if err != nil {
			unreachable = append(unreachable, fmt.Sprintf("%s (%s): %v", gw.GetId(), gw.GetAdminAddress(), err))
			continue
		}
		return r.judgeProbe(pr, from, gw.GetId(), wantResponder, wantCaller, nonce, bundles)
	}
	if len(unreachable) == 0 {
		return Result{Status: Fail, Message: fmt.Sprintf("cluster %s has no live gateway with an admin address to probe from", from),
			Hint: "the path check runs on the source cluster's gateway, through its admin port"}
	}
	return Result{Status: Fail, Message: fmt.Sprintf("no gateway of %s answered on its admin port: %s", from, strings.Join(unreachable, "; ")),
		Hint: "the path check asks the source cluster's gateway, on its admin port, to carry the probe: run strait check where the admin ports are reachable"}
}

func (r *runner) judgeProbe(pr *gateway.ProbeResult, from, via string, wantResponder, wantCaller spiffeid.ID, nonce []byte, bundles x509bundle.Source) Result {
	res := Result{Gateway: pr.Gateway, RTTSeconds: pr.Seconds}
	if pr.Error != "" {
		res.Status = Fail
		res.Layer = LayerQUIC
		if pr.Layer == gateway.LayerStream {
			res.Layer = LayerStream
		}
		code := ""
		if pr.Code != "" {
			code = " (" + pr.Code + ")"
		}
		res.Message = fmt.Sprintf("%s/%s could not probe %s: %s%s: %s", from, via, pr.Cluster, res.Layer, code, pr.Error)
		res.Hint = hintFor(res.Layer, pr.Address)
		return res
	}
	st, err := probe.Verify(pr.Signed, bundles, probe.VerifyOptions{Want: wantResponder, Nonce: nonce, Now: r.cfg.Now()})
	if err == nil && st.Caller != wantCaller.String() {
		err = fmt.Errorf("the responder authenticated the caller as %q, want %s", st.Caller, wantCaller)
	}
	if err != nil {
		res.Status, res.Layer = Fail, LayerIdentity
		res.Message = fmt.Sprintf("%s/%s -> %s/%s: statement does not verify: %v", from, via, pr.Cluster, pr.Gateway, err)
		res.Hint = "the answer did not come from the expected gateway, or its roots are not the ones in etcd"
		return res
	}
	res.Status = OK
	res.Message = fmt.Sprintf("%s/%s -> %s/%s: statement over our nonce signed by %s, which authenticated %s; %s",
		from, via, st.Cluster, st.Gateway, st.Responder, st.Caller, roundRTT(time.Duration(pr.Seconds*float64(time.Second))))
	return res
}

// askProbe asks the gateway at admin to probe cluster with nonce.
func (r *runner) askProbe(ctx context.Context, admin, cluster string, nonce []byte) (*gateway.ProbeResult, error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.ProbeTimeout)
	defer cancel()
	q := url.Values{"cluster": {cluster}, "nonce": {hex.EncodeToString(nonce)}}
	u := (&url.URL{Scheme: "http", Host: admin, Path: "/probe", RawQuery: q.Encode()}).String()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := r.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 2*probe.MaxFrameSize))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	var pr gateway.ProbeResult
	if err := json.Unmarshal(body, &pr); err != nil {
		return nil, fmt.Errorf("bad answer: %w", err)
	}
	return &pr, nil
}

func gatewayID(snap *federation.Snapshot, cluster string) (spiffeid.ID, error) {
	td, err := spiffeid.TrustDomainFromString(snap.TrustDomain(cluster))
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("cluster %s: %w", cluster, err)
	}
	return trust.GatewayID(td, cluster)
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}
