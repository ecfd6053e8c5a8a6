package federation

import (
	"fmt"
	"strings"
)

// DefaultPrefix is the etcd key prefix used when none is configured.
const DefaultPrefix = "/strait/v1/"

// Kind names the kind of record a key holds.
type Kind string

// The kinds of record in the keyspace.
const (
	KindGateway  Kind = "gateway"
	KindExport   Kind = "export"
	KindEndpoint Kind = "endpoint"
	KindBundle   Kind = "bundle"
	KindConfig   Kind = "config"
)

// Keyspace builds and parses the keys of the federation keyspace under one
// prefix. The zero Keyspace uses DefaultPrefix.
type Keyspace struct {
	// Prefix is prepended to every key. Zero means DefaultPrefix. It should
	// end with "/".
	Prefix string
}

func (k Keyspace) prefix() string {
	if k.Prefix == "" {
		return DefaultPrefix
	}
	return k.Prefix
}

// Root is the prefix that covers every key of the keyspace.
func (k Keyspace) Root() string { return k.prefix() }

// Gateway is the key of a gateway record.
func (k Keyspace) Gateway(cluster, id string) string {
	return k.prefix() + "clusters/" + cluster + "/gateways/" + id
}

// Export is the key of an export record.
func (k Keyspace) Export(cluster, namespace, service string) string {
	return k.prefix() + "clusters/" + cluster + "/exports/" + namespace + "/" + service
}

// Endpoint is the key of an endpoint record.
func (k Keyspace) Endpoint(cluster, namespace, service, id string) string {
	return k.prefix() + "clusters/" + cluster + "/endpoints/" + namespace + "/" + service + "/" + id
}

// Bundle is the key of a trust domain's bundle.
func (k Keyspace) Bundle(trustDomain string) string {
	return k.prefix() + "trust/" + trustDomain
}

// GlobalConfig is the key of the configuration every gateway applies.
func (k Keyspace) GlobalConfig() string { return k.prefix() + "config/global" }

// ClusterConfig is the key of one cluster's configuration overrides.
func (k Keyspace) ClusterConfig(cluster string) string {
	return k.prefix() + "config/clusters/" + cluster
}

// KeyInfo is what a key says about the record it holds.
type KeyInfo struct {
	Kind      Kind
	Cluster   string // gateways, exports, endpoints, cluster config
	Namespace string // exports, endpoints
	Service   string // exports, endpoints
	ID        string // gateways, endpoints
	// TrustDomain is set for bundles.
	TrustDomain string
}

// Parse tells which record a key holds. Keys outside the keyspace or of an
// unknown shape return an error.
func (k Keyspace) Parse(key string) (KeyInfo, error) {
	rest, ok := strings.CutPrefix(key, k.prefix())
	if !ok {
		return KeyInfo{}, fmt.Errorf("federation: key %q is outside prefix %q", key, k.prefix())
	}
	parts := strings.Split(rest, "/")
	for _, p := range parts {
		if p == "" {
			return KeyInfo{}, fmt.Errorf("federation: key %q has an empty segment", key)
		}
	}
	switch {
	case len(parts) == 4 && parts[0] == "clusters" && parts[2] == "gateways":
		return KeyInfo{Kind: KindGateway, Cluster: parts[1], ID: parts[3]}, nil
	case len(parts) == 5 && parts[0] == "clusters" && parts[2] == "exports":
		return KeyInfo{Kind: KindExport, Cluster: parts[1], Namespace: parts[3], Service: parts[4]}, nil
	case len(parts) == 6 && parts[0] == "clusters" && parts[2] == "endpoints":
		return KeyInfo{Kind: KindEndpoint, Cluster: parts[1], Namespace: parts[3], Service: parts[4], ID: parts[5]}, nil
	case len(parts) == 2 && parts[0] == "trust":
		return KeyInfo{Kind: KindBundle, TrustDomain: parts[1]}, nil
	case len(parts) == 2 && parts[0] == "config" && parts[1] == "global":
		return KeyInfo{Kind: KindConfig}, nil
	case len(parts) == 3 && parts[0] == "config" && parts[1] == "clusters":
		return KeyInfo{Kind: KindConfig, Cluster: parts[2]}, nil
	}
	return KeyInfo{}, fmt.Errorf("federation: key %q is not a known record", key)
}
