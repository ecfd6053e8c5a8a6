package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/strait-mesh/strait/federation"
)

// PhaseGOMAXPROCS is the phase of the rows of throughput by the gateways'
// GOMAXPROCS. It runs only when Config.Only names it: it starts a Strait
// deployment per value.
const PhaseGOMAXPROCS = "gomaxprocs"

// gatewayGOMAXPROCS are the values the phase runs Strait's gateways with.
func gatewayGOMAXPROCS() []int { return []int{1, 2} }

// gomaxprocs measures iperf3 throughput with 1 and 8 streams through Strait
// deployments whose two gateways run with each GOMAXPROCS of
// gatewayGOMAXPROCS (the proxies keep the machine's), taking turns with
// rawquic. The gateways hold their default number of connections per
// remote gateway, which follows GOMAXPROCS. Rows:
// throughput_<1_stream|8_streams>_gateways_gomaxprocs_<n>, with the
// rawquic column beside Strait's. With Config.ProfileDir, one more 8-stream
// run per deployment takes a CPU profile of both gateways into
// ProfileDir/gateway-<cluster>-gomaxprocs<n>.pprof.
func (e *env) gomaxprocs(ctx context.Context) error {
	if !slices.Contains(e.cfg.Only, PhaseGOMAXPROCS) {
		e.log.Info("phase skipped: it runs only when -only names it", "name", PhaseGOMAXPROCS)
		return nil
	}
	rq := e.peer(SetupRawQUIC)
	if rq == nil || rq.entry["iperf"] == "" {
		return errors.New("bench: gomaxprocs: no rawquic iperf route")
	}
	type target struct {
		n      int
		strait *Strait
		entry  string
	}
	var targets []target
	for _, n := range gatewayGOMAXPROCS() {
		s, entry, err := e.startGOMAXPROCS(ctx, n)
		if err != nil {
			return err
		}
		targets = append(targets, target{n, s, entry})
	}
	// A short run through each first: it checks the path end to end and
	// lets the pools dial all their connections.
	for _, t := range targets {
		if err := retry(ctx, 10, time.Second, func() error {
			_, err := Iperf3(ctx, e.bins.iperf3, t.entry, 1, time.Second)
			return err
		}); err != nil {
			return err
		}
	}
	var errs []error
	straitRuns := map[string][]float64{} // by row
	rawRuns := map[int][]float64{}       // by streams
	row := func(streams, n int) string {
		name := fmt.Sprintf("throughput_%d_stream", streams)
		if streams > 1 {
			name += "s"
		}
		return fmt.Sprintf("%s_gateways_gomaxprocs_%d", name, n)
	}
	for run := range e.cfg.ThroughputRuns {
		for _, streams := range []int{1, 8} {
			for _, t := range targets {
				v, err := Iperf3(ctx, e.bins.iperf3, t.entry, streams, e.cfg.ThroughputDuration)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				e.log.Info("throughput", "setup", SetupStrait, "gateway_gomaxprocs", t.n, "streams", streams, "run", run, "gbps", v)
				straitRuns[row(streams, t.n)] = append(straitRuns[row(streams, t.n)], v)
			}
			v, err := Iperf3(ctx, e.bins.iperf3, rq.entry["iperf"], streams, e.cfg.ThroughputDuration)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			e.log.Info("throughput", "setup", SetupRawQUIC, "streams", streams, "run", run, "gbps", v)
			rawRuns[streams] = append(rawRuns[streams], v)
		}
	}
	for _, t := range targets {
		for _, streams := range []int{1, 8} {
			m := Metric{Bench: row(streams, t.n), Unit: "Gbit/s", Values: map[string]float64{},
				Note: fmt.Sprintf("Strait's gateways at GOMAXPROCS=%d (and their default connections per remote gateway); its proxies and rawquic at the machine's", t.n)}
			if vs := straitRuns[m.Bench]; len(vs) > 0 {
				m.Values[SetupStrait] = median(vs)
			}
			if vs := rawRuns[streams]; len(vs) > 0 {
				m.Values[SetupRawQUIC] = median(vs)
			}
			e.add(m)
		}
	}
	if e.cfg.ProfileDir != "" {
		for _, t := range targets {
			if err := e.profileGateways(ctx, t.strait, t.entry, fmt.Sprintf("gomaxprocs%d", t.n)); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// startGOMAXPROCS starts a deployment exporting iperf3's server whose
// gateways run with GOMAXPROCS=n, and returns it with its entry.
func (e *env) startGOMAXPROCS(ctx context.Context, n int) (*Strait, string, error) {
	// Environment is set per binary path: the gateways get a copy of
	// their own.
	bin := filepath.Join(e.dir, fmt.Sprintf("strait-gateway-gomaxprocs%d.bin", n))
	if err := copyFile(e.bins.strait, bin); err != nil {
		return nil, "", err
	}
	e.ps.SetEnv(bin, append(slices.Clone(e.cfg.StraitEnv), fmt.Sprintf("GOMAXPROCS=%d", n)))
	cli, err := federation.Dial(federation.ClientConfig{Endpoints: []string{e.etcd}})
	if err != nil {
		return nil, "", fmt.Errorf("bench: etcd: %w", err)
	}
	defer cli.Close()
	svc := &StraitService{Name: "iperf", Port: 5201, App: e.iperf, NoProxyHeader: true}
	name := fmt.Sprintf("gomaxprocs%d", n)
	s, err := StartStrait(ctx, e.ps, cli, StraitConfig{
		Bin: bin, ProxyBin: e.bins.straitProxy, Dir: filepath.Join(e.dir, "strait-"+name), Etcd: e.etcd,
		Prefix: "/bench-" + name + "/", Name: "strait-" + name, Services: []*StraitService{svc},
	})
	if err != nil {
		return nil, "", err
	}
	return s, svc.Entry, nil
}

// profileGateways takes a CPU profile of s's two gateways during one more
// 8-stream iperf3 run through entry.
func (e *env) profileGateways(ctx context.Context, s *Strait, entry, tag string) error {
	if err := os.MkdirAll(e.cfg.ProfileDir, 0o755); err != nil {
		return fmt.Errorf("bench: profile: %w", err)
	}
	secs := max(1, int(e.cfg.ThroughputDuration/time.Second)+1)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for cluster, p := range map[string]*Proc{eastCluster: s.EastGW, westCluster: s.WestGW} {
		out := filepath.Join(e.cfg.ProfileDir, fmt.Sprintf("gateway-%s-%s.pprof", cluster, tag))
		wg.Go(func() {
			err := fetchProfile(ctx, s.Admin[p], secs, out)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			e.log.Info("profile", "process", p.Name, "file", out)
		})
	}
	// The profiles start with their requests: give them a moment.
	time.Sleep(200 * time.Millisecond)
	_, err := Iperf3(ctx, e.bins.iperf3, entry, 8, time.Duration(secs)*time.Second)
	wg.Wait()
	return errors.Join(append(errs, err)...)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		return fmt.Errorf("bench: copy %s: %w", src, err)
	}
	return out.Close()
}
