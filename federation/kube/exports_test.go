package kube

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	mcsv1alpha1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"

	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// TestExportFor: the Export a ServiceExport asks for, or the reason and
// message of Valid=False: a UDP (or any non-TCP) port refuses the whole
// export, since Strait carries TCP only; strait.io/servers narrows who may
// serve it.
func TestExportFor(t *testing.T) {
	c := &Controller{cfg: Config{Cluster: "east"}}
	svc := func(ports ...corev1.ServicePort) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "dns", Namespace: "shop"}, Spec: corev1.ServiceSpec{Ports: ports}}
	}
	se := func(annotations map[string]string) *mcsv1alpha1.ServiceExport {
		return &mcsv1alpha1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Name: "dns", Namespace: "shop", Annotations: annotations}}
	}
	tcp := corev1.ServicePort{Name: "tcp", Port: 53, Protocol: corev1.ProtocolTCP}
	udp := corev1.ServicePort{Name: "udp", Port: 53, Protocol: corev1.ProtocolUDP}
	tests := []struct {
		name        string
		svc         *corev1.Service
		se          *mcsv1alpha1.ServiceExport
		wantReason  string
		wantMessage []string
		wantServers []string
	}{
		{"tcp", svc(tcp), se(nil), "", nil, nil},
		{"udp only", svc(udp), se(nil), ReasonUnsupportedProtocol, []string{"Strait carries TCP only", "udp 53/UDP"}, nil},
		{"tcp and udp", svc(tcp, udp), se(nil), ReasonUnsupportedProtocol, []string{"Strait carries TCP only", "udp 53/UDP"}, nil},
		{"sctp", svc(corev1.ServicePort{Port: 9, Protocol: corev1.ProtocolSCTP}), se(nil), ReasonUnsupportedProtocol, []string{"sctp-9 9/SCTP"}, nil},
		{"servers", svc(tcp), se(map[string]string{AnnotationServers: "dns, dns-canary,dns"}), "", nil, []string{"dns", "dns-canary"}},
		{"bad servers", svc(tcp), se(map[string]string{AnnotationServers: "dns,Bad_SA"}), ReasonInvalidServers,
			[]string{AnnotationServers, `"Bad_SA"`}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, reason, msg := c.exportFor(tt.svc, tt.se)
			if reason != tt.wantReason {
				t.Fatalf("reason = %q (%s), want %q", reason, msg, tt.wantReason)
			}
			if tt.wantReason != "" {
				if e != nil {
					t.Errorf("export %v, want none", e)
				}
				for _, w := range tt.wantMessage {
					if !strings.Contains(msg, w) {
						t.Errorf("message %q does not mention %q", msg, w)
					}
				}
				if strings.Contains(msg, "TCP and UDP") {
					t.Errorf("message %q claims Strait carries UDP", msg)
				}
				return
			}
			for _, p := range e.GetPorts() {
				if p.GetProtocol() != straitv1.Protocol_PROTOCOL_TCP {
					t.Errorf("port %v is not TCP", p)
				}
			}
			if !slices.Equal(e.GetServers(), tt.wantServers) {
				t.Errorf("servers = %v, want %v", e.GetServers(), tt.wantServers)
			}
		})
	}
}
