package kubenode

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

func TestConfigValidation(t *testing.T) {
	p := netip.MustParsePrefix
	tests := []struct {
		name string
		cfg  Config
		want []string // substrings of the error
	}{
		{"no host", Config{Name: "east-node"}, []string{"no Host"}},
		{"bad name", Config{Name: "East_Node"}, []string{"no Host", `node name "East_Node"`}},
		{"pod cidr too big", Config{Name: "n", PodCIDR: p("10.0.0.0/8")}, []string{"pod CIDR 10.0.0.0/8"}},
		{"pod cidr not masked", Config{Name: "n", PodCIDR: p("10.244.0.1/24")}, []string{"pod CIDR"}},
		{"ipv6 services", Config{Name: "n", ServiceCIDR: p("fd00::/112")}, []string{"service CIDR"}},
		{"overlap", Config{Name: "n", PodCIDR: p("10.96.0.0/24")}, []string{"overlaps"}},
		{"long bridge", Config{Name: "n", Bridge: "a-very-long-bridge-name"}, []string{"bridge name"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.withDefaults().validate()
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("validate: %v, want ErrInvalidConfig", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestServiceIPs(t *testing.T) {
	c := Config{ServiceCIDR: netip.MustParsePrefix("10.96.3.0/24")}.withDefaults()
	if got := c.serviceIP(1).String(); got != "10.96.3.1" {
		t.Errorf("kubernetes Service IP %s", got)
	}
	if got := c.DNSIP().String(); got != "10.96.3.10" {
		t.Errorf("DNS IP %s", got)
	}
}

// TestCoreDNSManifest renders the CoreDNS installation and checks that every
// document parses and that the Corefile survives the indentation intact.
func TestCoreDNSManifest(t *testing.T) {
	corefile := DefaultCorefile("cluster.local")
	out, err := corednsManifest(corefile, CoreDNSImage, "10.96.0.10")
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]bool{}
	for _, doc := range strings.Split(string(out), "\n---\n") {
		var obj map[string]any
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			t.Fatalf("document does not parse: %v\n%s", err, doc)
		}
		kind, _ := obj["kind"].(string)
		kinds[kind] = true
		if kind == "ConfigMap" {
			data := obj["data"].(map[string]any)
			// (the document split drops the block's final newline)
			if got, _ := data["Corefile"].(string); strings.TrimRight(got, "\n") != strings.TrimRight(corefile, "\n") {
				t.Errorf("Corefile changed by rendering:\n%q\nwant\n%q", data["Corefile"], corefile)
			}
		}
		if kind == "Service" {
			spec := obj["spec"].(map[string]any)
			if spec["clusterIP"] != "10.96.0.10" {
				t.Errorf("kube-dns clusterIP %v", spec["clusterIP"])
			}
		}
	}
	for _, k := range []string{"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "Deployment", "Service"} {
		if !kinds[k] {
			t.Errorf("no %s in the manifest", k)
		}
	}
}

func TestCNIConflist(t *testing.T) {
	b, err := cniConflist("skbr0", "10.244.1.0/24", "/x/ipam")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"bridge": "skbr0"`, `"subnet": "10.244.1.0/24"`, `"dataDir": "/x/ipam"`, `"type": "portmap"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("conflist lacks %s:\n%s", want, b)
		}
	}
}

func TestMulticlusterCorefile(t *testing.T) {
	got := MulticlusterCorefile("cluster.local")
	for _, want := range []string{"kubernetes cluster.local clusterset.local in-addr.arpa ip6.arpa {", "multicluster clusterset.local"} {
		if !strings.Contains(got, want) {
			t.Errorf("Corefile lacks %q:\n%s", want, got)
		}
	}
}
