package gateway

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

func get(t *testing.T, g *running, path string) (int, string) {
	resp, err := http.Get("http://" + g.AdminAddr().String() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAdmin(t *testing.T) {
	_, a, b := twoClusters(t)
	if err := finishStreamCtx(a, clientHello(t, "9000.echo.default.any.strait"), payloadFor(1)); err != nil {
		t.Fatal(err)
	}
	code, body := get(t, a, "/metrics")
	for _, series := range []string{
		`strait_gateway_streams_total{cluster="a",direction="egress",gateway_id="a1",peer_cluster="b",result="accepted"} 1`,
		`strait_gateway_bytes_total{cluster="a",direction="sent",gateway_id="a1"}`,
		`strait_gateway_stream_setup_seconds_bucket`,
		`strait_gateway_peer_up{cluster="a",gateway_id="a1",peer="b1",peer_cluster="b"} 1`,
	} {
		if code != http.StatusOK || !strings.Contains(body, series) {
			t.Errorf("metrics lack %s", series)
		}
	}
	if code, _ := get(t, b, "/healthz"); code != http.StatusOK {
		t.Errorf("healthz %d", code)
	}
	if code, _ := get(t, b, "/readyz"); code != http.StatusOK {
		t.Errorf("readyz %d", code)
	}
	b.startDrain()
	if code, _ := get(t, b, "/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("readyz while draining %d", code)
	}
}

// TestLiveConfig: a GatewayConfig change applies without a restart.
func TestLiveConfig(t *testing.T) {
	w, _, b := twoClusters(t)
	if got := b.liveNow().header; got != DefaultHeaderTimeout {
		t.Fatalf("header timeout %v", got)
	}
	w.reg.add(&straitv1.GatewayConfig{HeaderTimeout: durationpb.New(150 * time.Millisecond)})
	if got := b.liveNow().header; got != 150*time.Millisecond {
		t.Fatalf("live header timeout %v, want 150ms", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn := w.dialAs(t, "a", b)
	silent, _ := conn.OpenStreamSync(ctx)
	next, _ := conn.OpenStreamSync(ctx)
	_, _ = next.Write([]byte{0})
	start := time.Now()
	_, err := silent.Read(make([]byte, 1))
	if err == nil || time.Since(start) > 2*time.Second {
		t.Fatalf("silent stream: %v after %v", err, time.Since(start))
	}
}
