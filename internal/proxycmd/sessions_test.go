package proxycmd

import (
	"testing"

	"github.com/strait-mesh/strait/proxy"
)

// The file's sessions and sessionPipeline settings select the proxy's
// session mode and whether new streams' bytes go out with their request;
// anything but on or off is refused.
func TestSessionSettings(t *testing.T) {
	for _, tc := range []struct {
		name, sessions, pipeline string
		mode                     proxy.SessionMode
		pipelineMode             proxy.PipelineMode
		bad                      bool
	}{
		{name: "defaults", mode: proxy.SessionsDefault},
		{name: "on", sessions: "on", mode: proxy.SessionsOn},
		{name: "off", sessions: "off", mode: proxy.SessionsOff},
		{name: "on, pipeline on", sessions: "on", pipeline: "on", mode: proxy.SessionsOn, pipelineMode: proxy.PipelineOn},
		{name: "on, pipeline off", sessions: "on", pipeline: "off", mode: proxy.SessionsOn, pipelineMode: proxy.PipelineOff},
		{name: "bad mode", sessions: "yes", bad: true},
		{name: "bad pipeline", sessions: "on", pipeline: "never", bad: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := File{Cluster: "west", Upstreams: []string{"a.default:80=127.0.0.1:8001"}, Sessions: tc.sessions, SessionPipeline: tc.pipeline}
			f.Identity.TrustDomain, f.Identity.CADir = "west.test", "/tmp/ca"
			cfg, err := f.Config()
			if tc.bad {
				if err == nil {
					t.Fatalf("Config accepted sessions %q, sessionPipeline %q", tc.sessions, tc.pipeline)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Sessions != tc.mode || cfg.SessionPipeline != tc.pipelineMode {
				t.Errorf("sessions %v, pipeline %v; want %v, %v", cfg.Sessions, cfg.SessionPipeline, tc.mode, tc.pipelineMode)
			}
		})
	}
}
