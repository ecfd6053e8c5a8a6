package proxy

import (
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-multierror"

	"github.com/strait-mesh/strait/federation"
)

func TestConfigValidateReportsEverything(t *testing.T) {
	_, err := New(Config{
		Cluster:     "West!",
		Service:     "echo",
		AppAddr:     "nohostport",
		DialTimeout: -time.Second,
		Upstreams: []Upstream{
			{Service: federation.ServiceKey{Namespace: "default", Name: "a"}, Port: 1, ListenAddr: "127.0.0.1:0"},
			{Service: federation.ServiceKey{Namespace: "default", Name: "a"}, Port: 1, ListenAddr: "127.0.0.1:0"},
		},
	})
	var me *multierror.Error
	if err == nil || !strings.HasPrefix(err.Error(), "proxy: invalid config") {
		t.Fatalf("New() error = %v", err)
	}
	if !asMulti(err, &me) {
		t.Fatalf("error %v does not wrap a multierror", err)
	}
	for _, want := range []string{"cluster", "app address", "dial timeout", "listed twice", "SVID source", "bundle source", "snapshot source"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q:\n%v", want, err)
		}
	}
	if len(me.Errors) < 7 {
		t.Errorf("got %d problems, want at least 7", len(me.Errors))
	}
}

func asMulti(err error, me **multierror.Error) bool {
	for err != nil {
		if m, ok := err.(*multierror.Error); ok {
			*me = m
			return true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
}

func TestConfigDefaults(t *testing.T) {
	cfg := Config{Service: "echo", AppAddr: "127.0.0.1:8080"}.withDefaults()
	if cfg.Namespace != DefaultNamespace || cfg.ServiceAccount != "echo" || cfg.InboundListenAddr != DefaultInboundListenAddr {
		t.Errorf("defaults: %+v", cfg)
	}
	if len(cfg.Ports) != 1 || cfg.Ports[0].GetPort() != 8080 {
		t.Errorf("default ports = %v", cfg.Ports)
	}
	if cfg.HealthCheck.Interval != DefaultHealthInterval || cfg.HealthCheck.Timeout != DefaultHealthTimeout {
		t.Errorf("health check defaults = %+v", cfg.HealthCheck)
	}
	// Sessions hold a new stream's bytes until the answer unless the
	// caller asks for pipelining; asked for, the session package's window
	// (zero: two round trips) applies.
	if cfg.SessionPipeline != PipelineOff || cfg.Session.Pipeline >= 0 {
		t.Errorf("session pipeline by default = %v, window %v; want off, negative", cfg.SessionPipeline, cfg.Session.Pipeline)
	}
	if on := (Config{Service: "echo", SessionPipeline: PipelineOn}).withDefaults(); on.Session.Pipeline != 0 {
		t.Errorf("session pipeline on: window %v, want 0 (the session package's default)", on.Session.Pipeline)
	}
	short := HealthCheck{Interval: 100 * time.Millisecond}.withDefaults()
	if short.Timeout != 100*time.Millisecond {
		t.Errorf("timeout with a short interval = %v, want the interval", short.Timeout)
	}
}

func TestParseUpstream(t *testing.T) {
	tests := []struct {
		in      string
		want    Upstream
		wantErr bool
	}{
		{in: "payments.default:9000=127.0.0.1:19000",
			want: Upstream{Service: federation.ServiceKey{Namespace: "default", Name: "payments"}, Port: 9000, ListenAddr: "127.0.0.1:19000"}},
		{in: "payments.default.west:9000=:19000",
			want: Upstream{Service: federation.ServiceKey{Namespace: "default", Name: "payments"}, Port: 9000, Cluster: "west", ListenAddr: ":19000"}},
		{in: "payments.default:9000", wantErr: true},
		{in: "payments:9000=127.0.0.1:1", wantErr: true},
		{in: "payments.default:0=127.0.0.1:1", wantErr: true},
		{in: "payments.default:70000=127.0.0.1:1", wantErr: true},
		{in: "payments.default=127.0.0.1:1", wantErr: true},
		{in: "Pay_ments.default:9000=127.0.0.1:1", wantErr: true},
		{in: "payments.default:9000=nohost", wantErr: true},
		{in: "a.b.c.d:9000=127.0.0.1:1", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseUpstream(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Errorf("ParseUpstream() = %+v, want an error", got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseUpstream() = %+v, %v; want %+v", got, err, tt.want)
			}
			if got.String() != tt.in {
				t.Errorf("String() = %q, want %q", got.String(), tt.in)
			}
		})
	}
}
