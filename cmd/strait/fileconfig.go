package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/hashicorp/go-multierror"
	"sigs.k8s.io/yaml"

	"github.com/strait-mesh/strait/federation"
)

// duration is a time.Duration written as "1.5s" in config files.
type duration time.Duration

func (d *duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration: want a string such as \"1.5s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = duration(v)
	return nil
}

func (d duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// etcdFile says how a gateway or proxy reaches etcd.
type etcdFile struct {
	// Endpoints are client URLs. Zero means the one `strait dev` serves.
	Endpoints []string `json:"endpoints,omitempty"`
	// CertFile, KeyFile and CAFile enable TLS client authentication.
	CertFile string `json:"certFile,omitempty"`
	KeyFile  string `json:"keyFile,omitempty"`
	CAFile   string `json:"caFile,omitempty"`
	// Prefix is the keyspace prefix. Zero means /strait/v1/.
	Prefix string `json:"prefix,omitempty"`
	// LeaseTTL is the TTL of the process' registrations. Zero means 10s.
	LeaseTTL duration `json:"leaseTTL,omitempty"`
}

func (e etcdFile) clientConfig() federation.ClientConfig {
	return federation.ClientConfig{Endpoints: e.Endpoints, CertFile: e.CertFile, KeyFile: e.KeyFile, CAFile: e.CAFile}
}

// identityFile says where the process' SVIDs come from: the cluster's
// built-in CA kept in CADir, or the SPIRE agent at SPIREAgentSocket.
type identityFile struct {
	// TrustDomain is the cluster's trust domain. Required.
	TrustDomain string `json:"trustDomain"`
	// CADir keeps the built-in CA's roots. The first process of a cluster
	// to start creates them; the others load them.
	CADir string `json:"caDir,omitempty"`
	// SVIDTTL is the lifetime of built-in CA SVIDs. Zero means 1h.
	SVIDTTL duration `json:"svidTTL,omitempty"`
	// SPIREAgentSocket is the Workload API address, e.g.
	// unix:///run/spire/agent.sock. It replaces the built-in CA.
	SPIREAgentSocket string `json:"spireAgentSocket,omitempty"`
	// Federates lists the trust domains to trust besides the local one.
	// Zero means every trust domain that publishes a bundle in etcd.
	Federates []string `json:"federates,omitempty"`
}

func (i identityFile) validate() error {
	var errs *multierror.Error
	if i.TrustDomain == "" {
		errs = multierror.Append(errs, errors.New("identity.trustDomain is required"))
	}
	if (i.CADir == "") == (i.SPIREAgentSocket == "") {
		errs = multierror.Append(errs, errors.New("set exactly one of identity.caDir and identity.spireAgentSocket"))
	}
	return errs.ErrorOrNil()
}

// listenFile is a listener: where it binds and what others dial.
type listenFile struct {
	Listen    string `json:"listen,omitempty"`
	Advertise string `json:"advertise,omitempty"`
}

// readFileConfig reads a YAML or JSON file into v, refusing unknown fields:
// a typo must not silently fall back to a default.
func readFileConfig(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := yaml.UnmarshalStrict(data, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
