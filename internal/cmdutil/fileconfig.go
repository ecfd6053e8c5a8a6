package cmdutil

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/go-multierror"
	"sigs.k8s.io/yaml"

	"github.com/strait-mesh/strait/federation"
)

// Duration is a time.Duration written as "1.5s" in config files.
type Duration time.Duration

// UnmarshalJSON reads a duration string such as "1.5s".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration: want a string such as \"1.5s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes the duration as a string such as "1.5s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// EtcdFile says how a gateway or proxy reaches etcd.
type EtcdFile struct {
	// Endpoints are client URLs. Zero means the one `strait dev` serves.
	Endpoints []string `json:"endpoints,omitempty"`
	// CertFile, KeyFile and CAFile enable TLS client authentication.
	CertFile string `json:"certFile,omitempty"`
	KeyFile  string `json:"keyFile,omitempty"`
	CAFile   string `json:"caFile,omitempty"`
	// Prefix is the keyspace prefix. Zero means /strait/v1/.
	Prefix string `json:"prefix,omitempty"`
	// LeaseTTL is the TTL of the process' registrations. Zero means 10s.
	LeaseTTL Duration `json:"leaseTTL,omitempty"`
}

// ClientConfig is the federation client configuration of the section.
func (e EtcdFile) ClientConfig() federation.ClientConfig {
	return federation.ClientConfig{Endpoints: e.Endpoints, CertFile: e.CertFile, KeyFile: e.KeyFile, CAFile: e.CAFile}
}

// Keyspace is the federation keyspace of the section.
func (e EtcdFile) Keyspace() federation.Keyspace {
	return federation.Keyspace{Prefix: e.Prefix}
}

// IdentityFile says where the process' SVIDs come from: the cluster's
// built-in CA kept in CADir, or the SPIRE agent at SPIREAgentSocket.
type IdentityFile struct {
	// TrustDomain is the cluster's trust domain. Required.
	TrustDomain string `json:"trustDomain"`
	// CADir keeps the built-in CA's roots. The first process of a cluster
	// to start creates them; the others load them.
	CADir string `json:"caDir,omitempty"`
	// SVIDTTL is the lifetime of built-in CA SVIDs. Zero means 1h.
	SVIDTTL Duration `json:"svidTTL,omitempty"`
	// SPIREAgentSocket is the Workload API address, e.g.
	// unix:///run/spire/agent.sock. It replaces the built-in CA.
	SPIREAgentSocket string `json:"spireAgentSocket,omitempty"`
	// Federates lists the trust domains to trust besides the local one.
	// Zero means every trust domain that publishes a bundle in etcd.
	Federates []string `json:"federates,omitempty"`
}

// Validate returns every problem of the section at once.
func (i IdentityFile) Validate() error {
	var errs *multierror.Error
	if i.TrustDomain == "" {
		errs = multierror.Append(errs, errors.New("identity.trustDomain is required"))
	}
	if (i.CADir == "") == (i.SPIREAgentSocket == "") {
		errs = multierror.Append(errs, errors.New("set exactly one of identity.caDir and identity.spireAgentSocket"))
	}
	return errs.ErrorOrNil()
}

// ListenFile is a listener: where it binds and what others dial.
type ListenFile struct {
	Listen    string `json:"listen,omitempty"`
	Advertise string `json:"advertise,omitempty"`
}

// ReadFile reads a YAML or JSON file into v, refusing unknown fields: a
// typo must not silently fall back to a default. Placeholders @NAME@ in the
// file are first replaced by the environment variable NAME (see
// ExpandPlaceholders), so that a Kubernetes ConfigMap can be a template
// that each pod fills from its own environment (@POD_IP@ from the downward
// API) without an init container to render it.
func ReadFile(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	data, err = ExpandPlaceholders(data, os.LookupEnv)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := yaml.UnmarshalStrict(data, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// ParseLevel parses a log level: debug, info, warn or error.
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return l, fmt.Errorf("--log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// placeholder is @NAME@ with NAME an environment variable name in capitals.
var placeholder = regexp.MustCompile(`@[A-Z][A-Z0-9_]*@`)

// ErrUnsetPlaceholder is wrapped by ExpandPlaceholders' error for a
// placeholder whose variable is not set.
var ErrUnsetPlaceholder = errors.New("placeholder of an unset environment variable")

// ExpandPlaceholders replaces each @NAME@ in data (NAME: capital letters,
// digits and underscores, starting with a letter) by the value lookup gives
// NAME, verbatim. A placeholder whose variable is unset is an error that
// wraps ErrUnsetPlaceholder and names every such placeholder: a config file
// must not run with an address left as "@POD_IP@".
func ExpandPlaceholders(data []byte, lookup func(string) (string, bool)) ([]byte, error) {
	var unset []string
	out := placeholder.ReplaceAllFunc(data, func(m []byte) []byte {
		name := string(m[1 : len(m)-1])
		v, ok := lookup(name)
		if !ok {
			if !slices.Contains(unset, string(m)) {
				unset = append(unset, string(m))
			}
			return m
		}
		return []byte(v)
	})
	if len(unset) > 0 {
		return nil, fmt.Errorf("%w: %s", ErrUnsetPlaceholder, strings.Join(unset, ", "))
	}
	return out, nil
}
