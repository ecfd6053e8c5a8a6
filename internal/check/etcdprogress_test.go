package check

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

func TestProgress(t *testing.T) {
	st := func(applied uint64) *pb.StatusResponse { return &pb.StatusResponse{RaftAppliedIndex: applied} }
	tests := []struct {
		name          string
		commit        uint64
		first, second *pb.StatusResponse
		want          Status
		says          string
	}{
		{"applied the commit index", 100, st(100), nil, OK, "applied index 100"},
		{"quiet cluster: nothing moves, nothing is behind", 100, st(100), st(100), OK, "applied index 100"},
		{"caught up on the second reading", 100, st(90), st(105), OK, "caught up with commit index 100"},
		{"moving but still behind", 100, st(50), st(60), Warn, "40 entries behind"},
		{"stuck", 100, st(50), st(50), Warn, "stuck at 50"},
		{"behind, not read again", 100, st(50), nil, Warn, "not read again"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, msg, hint := progress(tc.commit, tc.first, tc.second)
			if got != tc.want || !strings.Contains(msg, tc.says) {
				t.Fatalf("progress: %s %q, want %s saying %q", got, msg, tc.want, tc.says)
			}
			if (got == OK) != (hint == "") {
				t.Fatalf("status %s with hint %q", got, hint)
			}
		})
	}
}

// TestServerCert serves TLS on loopback with certificates of each
// validity and checks what the etcd server certificate check says.
func TestServerCert(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name     string
		notAfter time.Time
		want     Status
		says     string
	}{
		{"valid", now.Add(90 * 24 * time.Hour), OK, "valid until"},
		{"expiring", now.Add(24 * time.Hour), Warn, "expires in"},
		{"expired", now.Add(-time.Hour), Fail, "expired at"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ep := serveTLS(t, tc.notAfter)
			res, ok := serverCert(context.Background(), "https://"+ep, now, defaultExpiryWarning)
			if !ok {
				t.Fatal("an https endpoint was not checked")
			}
			if res.Status != tc.want || !strings.Contains(res.Message, tc.says) || !strings.Contains(res.Message, "CN=etcd-test") {
				t.Fatalf("server certificate: %s %q, want %s saying %q about CN=etcd-test", res.Status, res.Message, tc.want, tc.says)
			}
		})
	}
	if _, ok := serverCert(context.Background(), "http://127.0.0.1:2379", now, defaultExpiryWarning); ok {
		t.Error("a plain http endpoint was checked for a certificate")
	}
	// A listener that closed: the handshake fails, which is a failure.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	if res, ok := serverCert(context.Background(), "https://"+addr, now, defaultExpiryWarning); !ok || res.Status != Fail {
		t.Errorf("closed port: %+v (checked %t), want a failure", res, ok)
	}
}

func serveTLS(t *testing.T, notAfter time.Time) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "etcd-test"},
		NotBefore:    notAfter.Add(-365 * 24 * time.Hour),
		NotAfter:     notAfter,
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	return l.Addr().String()
}
