package trust

import (
	"fmt"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// WorkloadID is the SPIFFE ID of a workload:
// spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>.
func WorkloadID(td spiffeid.TrustDomain, namespace, serviceAccount string) (spiffeid.ID, error) {
	id, err := spiffeid.FromSegments(td, "ns", namespace, "sa", serviceAccount)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("trust: workload ID for %s/%s: %w", namespace, serviceAccount, err)
	}
	return id, nil
}

// GatewayID is the SPIFFE ID of a cluster's gateways:
// spiffe://<trust-domain>/strait/gateway/<cluster>.
func GatewayID(td spiffeid.TrustDomain, cluster string) (spiffeid.ID, error) {
	id, err := spiffeid.FromSegments(td, "strait", "gateway", cluster)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("trust: gateway ID for cluster %s: %w", cluster, err)
	}
	return id, nil
}
