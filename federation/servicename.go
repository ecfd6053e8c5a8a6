package federation

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// AnyCluster in a ServiceName lets the router pick the cluster.
const AnyCluster = "any"

// nameSuffix ends every service name on the data path.
const nameSuffix = ".strait"

// ErrBadServiceName is returned for names that do not follow the grammar.
var ErrBadServiceName = errors.New("bad service name")

// ServiceKey names a service across clusters: MCS semantics make every
// export of the same namespace and name one global service.
type ServiceKey struct {
	Namespace string
	Name      string
}

func (k ServiceKey) String() string { return k.Name + "." + k.Namespace }

// ServiceName is the destination the source proxy puts in the SNI of the
// inner ClientHello and that gateways route by:
//
//	<port>.<service>.<namespace>.<cluster or "any">.strait
//
// For example "9000.payments.default.any.strait" is port 9000 of
// payments.default in whichever cluster the router picks, and
// "9000.payments.default.west.strait" pins it to cluster west.
type ServiceName struct {
	Port    uint16
	Service ServiceKey
	// Cluster is a cluster name or AnyCluster.
	Cluster string
}

// String renders the name in the grammar above.
func (n ServiceName) String() string {
	cluster := n.Cluster
	if cluster == "" {
		cluster = AnyCluster
	}
	return strconv.Itoa(int(n.Port)) + "." + n.Service.Name + "." + n.Service.Namespace + "." + cluster + nameSuffix
}

// ParseServiceName parses a name in the grammar of ServiceName. Names are
// ASCII and case-insensitive (as DNS names are) and returned in lower case.
func ParseServiceName(s string) (ServiceName, error) {
	for i := 0; i < len(s); i++ {
		// Only ASCII may fold: strings.ToLower maps U+212A KELVIN SIGN to 'k'.
		if s[i] >= utf8.RuneSelf {
			return ServiceName{}, fmt.Errorf("%w %q: not ASCII", ErrBadServiceName, s)
		}
	}
	rest, ok := strings.CutSuffix(strings.ToLower(s), nameSuffix)
	if !ok {
		return ServiceName{}, fmt.Errorf("%w %q: missing %q suffix", ErrBadServiceName, s, nameSuffix)
	}
	parts := strings.Split(rest, ".")
	if len(parts) != 4 {
		return ServiceName{}, fmt.Errorf("%w %q: want <port>.<service>.<namespace>.<cluster>%s", ErrBadServiceName, s, nameSuffix)
	}
	port, err := strconv.ParseUint(parts[0], 10, 16)
	if err != nil || port == 0 || parts[0][0] == '0' {
		return ServiceName{}, fmt.Errorf("%w %q: port %q is not 1-65535", ErrBadServiceName, s, parts[0])
	}
	for _, label := range parts[1:] {
		if err := ValidateLabel(label); err != nil {
			return ServiceName{}, fmt.Errorf("%w %q: %w", ErrBadServiceName, s, err)
		}
	}
	return ServiceName{
		Port:    uint16(port),
		Service: ServiceKey{Namespace: parts[2], Name: parts[1]},
		Cluster: parts[3],
	}, nil
}

// ValidateLabel checks that s is a DNS label as Kubernetes defines it
// (RFC 1123): 1-63 characters of [a-z0-9-], starting and ending with an
// alphanumeric. Cluster, namespace and service names are labels.
func ValidateLabel(s string) error {
	if len(s) == 0 || len(s) > 63 {
		return fmt.Errorf("label %q must be 1-63 characters", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
		if alnum || (c == '-' && i != 0 && i != len(s)-1) {
			continue
		}
		return fmt.Errorf("label %q must be lower-case alphanumerics or '-', starting and ending alphanumeric", s)
	}
	return nil
}
