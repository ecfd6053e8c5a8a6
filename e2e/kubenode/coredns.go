package kubenode

import (
	"bytes"
	_ "embed"
	"fmt"
	"strings"
	"text/template"
)

// DefaultCorefile returns the cluster DNS configuration: Services and pods
// of domain, nothing forwarded (the nodes are offline). Callers that serve
// more zones (clusterset.local) pass their own Corefile in
// Config.Corefile.
func DefaultCorefile(domain string) string {
	return `.:53 {
    errors
    health {
        lameduck 2s
    }
    ready
    kubernetes ` + domain + ` in-addr.arpa ip6.arpa {
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }
    cache 5
    reload
    loadbalance
}
`
}

// ClustersetDomain is the Multi-Cluster Services API's DNS zone (KEP-1645):
// <service>.<namespace>.svc.clusterset.local names a ServiceImport.
const ClustersetDomain = "clusterset.local"

// MulticlusterCorefile returns DefaultCorefile with CoreDNS's kubernetes
// plugin also serving ServiceImports under clusterset.local (the
// "multicluster" option): hello.demo.svc.clusterset.local answers the
// ServiceImport's IPs. It is what a cluster running Strait's MCS controller
// needs (deploy/README.md); the ServiceImport CRD must exist before CoreDNS
// starts, and CoreDNS's ClusterRole must allow listing and watching
// ServiceImports (manifests/coredns.yaml does).
func MulticlusterCorefile(domain string) string {
	return strings.Replace(DefaultCorefile(domain),
		"    kubernetes "+domain+" in-addr.arpa ip6.arpa {\n",
		"    kubernetes "+domain+" "+ClustersetDomain+" in-addr.arpa ip6.arpa {\n        multicluster "+ClustersetDomain+"\n", 1)
}

//go:embed manifests/coredns.yaml
var corednsYAML string

var corednsTmpl = template.Must(template.New("coredns").Funcs(template.FuncMap{
	"indent": func(n int, s string) string {
		pad := strings.Repeat(" ", n)
		return pad + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n"+pad)
	},
}).Parse(corednsYAML))

// corednsManifest renders the CoreDNS installation.
func corednsManifest(corefile, image, dnsIP string) ([]byte, error) {
	var buf bytes.Buffer
	err := corednsTmpl.Execute(&buf, map[string]string{"Corefile": corefile, "Image": image, "DNSIP": dnsIP})
	if err != nil {
		return nil, fmt.Errorf("kubenode: render coredns: %w", err)
	}
	return buf.Bytes(), nil
}
