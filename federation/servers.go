package federation

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// ErrServerNotAllowed is matched (errors.Is) by a *ServerNotAllowedError:
// a SPIFFE ID that may not serve a service.
var ErrServerNotAllowed = errors.New("identity may not serve the service")

// ErrUDPUnsupported is matched by the problem reported for an exported UDP
// port: Strait carries TCP only (UDP over QUIC datagrams is not built yet),
// so such an export is refused rather than silently not routed.
var ErrUDPUnsupported = errors.New("UDP is not supported: Strait carries TCP only")

// ReasonServerIdentity is the reason label of
// strait_federation_invalid_records_total for an endpoint record whose
// SPIFFE ID may not serve its service (Snapshot.RejectedEndpoints).
const ReasonServerIdentity = "server_identity"

// ServerPolicy says which SPIFFE IDs may serve a service in one cluster:
// the workload IDs spiffe://<TrustDomain>/ns/<Namespace>/sa/<account> of
// the service's namespace in the cluster's trust domain, narrowed to the
// listed ServiceAccounts (Export.servers) when there are any. A trust domain
// alone is never enough.
type ServerPolicy struct {
	// TrustDomain is the serving cluster's trust domain. The zero value
	// leaves the trust domain unchecked: the snapshot uses it for a cluster
	// whose gateways announce none, and callers who know the trust domain
	// (a proxy judging its own cluster's endpoints) set it.
	TrustDomain spiffeid.TrustDomain
	// Namespace is the service's namespace. Required.
	Namespace string
	// ServiceAccounts narrows the allowed service accounts. Empty means any
	// service account of Namespace.
	ServiceAccounts []string
}

// ExportServers is the ServerPolicy of an export (nil: the cluster does not
// export the service, and the default applies) in the namespace of the
// service, for the exporting cluster's trust domain td.
func ExportServers(td spiffeid.TrustDomain, namespace string, e *straitv1.Export) ServerPolicy {
	return ServerPolicy{TrustDomain: td, Namespace: namespace, ServiceAccounts: e.GetServers()}
}

// Allows reports whether id may serve.
func (p ServerPolicy) Allows(id spiffeid.ID) bool { return p.Check(id) == nil }

// Check returns nil when id may serve, and a *ServerNotAllowedError saying
// why not otherwise.
func (p ServerPolicy) Check(id spiffeid.ID) error {
	refuse := func(format string, args ...any) error {
		return &ServerNotAllowedError{ID: id, Allowed: p.String(), Problem: fmt.Sprintf(format, args...)}
	}
	if id.IsZero() {
		return refuse("no SPIFFE ID")
	}
	if !p.TrustDomain.IsZero() && id.TrustDomain() != p.TrustDomain {
		return refuse("trust domain %s is not the serving cluster's %s", id.TrustDomain().Name(), p.TrustDomain.Name())
	}
	ns, sa, ok := WorkloadParts(id)
	switch {
	case !ok:
		return refuse("not a workload ID (/ns/<namespace>/sa/<service account>)")
	case ns != p.Namespace:
		return refuse("namespace %s is not the service's %s", ns, p.Namespace)
	case len(p.ServiceAccounts) > 0 && !slices.Contains(p.ServiceAccounts, sa):
		return refuse("service account %s is not among the export's servers", sa)
	}
	return nil
}

// String renders the policy as a SPIFFE ID pattern, for logs and errors:
// spiffe://west.example/ns/shop/sa/* or spiffe://west.example/ns/shop/sa/{api,worker}.
func (p ServerPolicy) String() string {
	td := "*"
	if !p.TrustDomain.IsZero() {
		td = p.TrustDomain.Name()
	}
	sa := "*"
	switch len(p.ServiceAccounts) {
	case 0:
	case 1:
		sa = p.ServiceAccounts[0]
	default:
		sa = "{" + strings.Join(p.ServiceAccounts, ",") + "}"
	}
	return "spiffe://" + td + "/ns/" + p.Namespace + "/sa/" + sa
}

// WorkloadParts splits a workload ID spiffe://<td>/ns/<namespace>/sa/<sa>
// into its namespace and service account; ok is false for any other path.
func WorkloadParts(id spiffeid.ID) (namespace, serviceAccount string, ok bool) {
	rest, ok := strings.CutPrefix(id.Path(), "/ns/")
	if !ok {
		return "", "", false
	}
	namespace, rest, ok = strings.Cut(rest, "/sa/")
	if !ok || namespace == "" || rest == "" || strings.Contains(namespace, "/") || strings.Contains(rest, "/") {
		return "", "", false
	}
	return namespace, rest, true
}

// ServerNotAllowedError is a SPIFFE ID that may not serve a service. It
// matches ErrServerNotAllowed.
type ServerNotAllowedError struct {
	// ID is the refused identity (zero when there was none).
	ID spiffeid.ID
	// Allowed is the policy, as ServerPolicy.String renders it.
	Allowed string
	// Problem says what does not match.
	Problem string
}

func (e *ServerNotAllowedError) Error() string {
	return fmt.Sprintf("federation: %s may not serve (allowed: %s): %s", e.ID, e.Allowed, e.Problem)
}

// Is makes errors.Is(err, ErrServerNotAllowed) true.
func (e *ServerNotAllowedError) Is(target error) bool { return target == ErrServerNotAllowed }

// ValidateServiceAccount checks a service account name of Export.servers:
// a Kubernetes service account name (a DNS subdomain: 1-253 characters of
// lower-case letters, digits, '-' and '.', starting and ending with a
// letter or digit).
func ValidateServiceAccount(name string) error {
	if name == "" || len(name) > 253 {
		return fmt.Errorf("service account %q: must be 1-253 characters", name)
	}
	alnum := func(r byte) bool { return r >= 'a' && r <= 'z' || r >= '0' && r <= '9' }
	for i := 0; i < len(name); i++ {
		if c := name[i]; !alnum(c) && c != '-' && c != '.' {
			return fmt.Errorf("service account %q: only lower-case letters, digits, '-' and '.' are allowed", name)
		}
	}
	if !alnum(name[0]) || !alnum(name[len(name)-1]) {
		return fmt.Errorf("service account %q: must start and end with a letter or digit", name)
	}
	return nil
}
