package bench

import (
	"io"
	"os"
	"path/filepath"
	"testing"
)

// TestParseTLS reads the negotiated parameters out of real log lines of
// each source (testdata): stunnel4 at level info, haproxy with the
// harness' log-formats, Strait's handshake counters and rawquic's log.
func TestParseTLS(t *testing.T) {
	for _, tt := range []struct {
		file  string
		parse func(io.Reader) *tlsCounts
		want  TLSInfo
	}{
		{"stunnel-client.log", parseStunnelLog, TLSInfo{Version: "TLSv1.3", Group: "X25519", Cipher: "TLS_AES_256_GCM_SHA384", Handshakes: 2, Resumed: 1}},
		// A connection closed before its handshake ("-") is no handshake;
		// haproxy 2.6 does not name the group.
		{"haproxy.log", parseHAProxyLog, TLSInfo{Version: "TLSv1.3", Cipher: "TLS_AES_256_GCM_SHA384", Handshakes: 3, Resumed: 2}},
		// Only the inner layer's series with a count; another metric
		// whose name starts the same is not counted.
		{"metrics.txt", func(r io.Reader) *tlsCounts { return parseTLSMetrics(r, "inner") },
			TLSInfo{Group: "X25519,X25519MLKEM768", Cipher: "TLS_AES_128_GCM_SHA256,TLS_AES_256_GCM_SHA384", Handshakes: 32, Resumed: -1}},
		{"metrics.txt", func(r io.Reader) *tlsCounts { return parseTLSMetrics(r, "tunnel") },
			TLSInfo{Group: "X25519MLKEM768", Cipher: "TLS_AES_128_GCM_SHA256", Handshakes: 1, Resumed: -1}},
		{"rawquic.log", parseRawQUICLog, TLSInfo{Version: "TLSv1.3", Group: "X25519MLKEM768", Cipher: "TLS_AES_128_GCM_SHA256", Handshakes: 2, Resumed: 1}},
	} {
		f, err := os.Open(filepath.Join("testdata", tt.file))
		if err != nil {
			t.Fatal(err)
		}
		got := tt.parse(f).info("", "", "", "")
		_ = f.Close()
		if got != tt.want {
			t.Errorf("%s: got %+v, want %+v", tt.file, got, tt.want)
		}
	}
}
