package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/strait-mesh/strait/internal/cmdutil"
	"github.com/strait-mesh/strait/internal/proxycmd"
)

// TestDeployConfigsParse reads every Strait config file shipped in deploy/
// (the example files, and the templates in the overlays' and examples'
// ConfigMaps once their placeholders are filled) with the strict parser of
// `strait gateway` and `strait proxy`.
func TestDeployConfigsParse(t *testing.T) {
	root := filepath.Join("..", "..", "deploy")
	fill := strings.NewReplacer("@POD_NAME@", "gw-abc", "@NODE_IP@", "172.18.0.2",
		"@POD_IP@", "10.244.0.5", "@ETCD_ENDPOINT@", "http://172.18.0.3:32379")
	files := map[string]string{} // name → content
	for _, f := range []string{"config/gateway.yaml", "config/proxy.yaml"} {
		data, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		files[f] = string(data)
	}
	manifests, _ := filepath.Glob(filepath.Join(root, "overlays", "*", "config.yaml"))
	examples, _ := filepath.Glob(filepath.Join(root, "examples", "*.yaml"))
	for _, m := range append(manifests, examples...) {
		data, err := os.ReadFile(m)
		if err != nil {
			t.Fatal(err)
		}
		for _, doc := range strings.Split(string(data), "\n---\n") {
			var cm struct {
				Kind string            `json:"kind"`
				Data map[string]string `json:"data"`
			}
			if err := yaml.Unmarshal([]byte(doc), &cm); err != nil {
				t.Fatalf("%s: %v", m, err)
			}
			for k, v := range cm.Data {
				if cm.Kind == "ConfigMap" && (k == "gateway.yaml" || k == "proxy.yaml") {
					files[m+":"+k] = fill.Replace(v)
				}
			}
		}
	}
	var gateways, proxies int
	for name, content := range files {
		path := filepath.Join(t.TempDir(), "c.yaml")
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(name, "gateway.yaml") {
			gateways++
			var f gatewayFile
			if err := cmdutil.ReadFile(path, &f); err != nil {
				t.Errorf("%s: %v", name, err)
				continue
			}
			if err := f.Identity.Validate(); err != nil || f.Cluster == "" || f.ID == "" {
				t.Errorf("%s: cluster %q id %q identity: %v", name, f.Cluster, f.ID, err)
			}
			continue
		}
		proxies++
		var f proxycmd.File
		if err := cmdutil.ReadFile(path, &f); err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if _, err := f.Config(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if err := f.Identity.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	// config/, and the overlays and examples of east, west and central.
	if gateways != 4 || proxies != 4 {
		t.Errorf("found %d gateway and %d proxy configs, want 4 and 4", gateways, proxies)
	}
}
