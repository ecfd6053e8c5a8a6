package sni

import (
	"crypto/tls"
	"testing"
)

func FuzzParseClientHello(f *testing.F) {
	name := "9000.echo.default.any.strait"
	for _, cfg := range []*tls.Config{
		{ServerName: name},
		{ServerName: "127.0.0.1"}, // no SNI
		{ServerName: name, MaxVersion: tls.VersionTLS12},
		{ServerName: name, NextProtos: []string{"h2", "http/1.1"}, CurvePreferences: []tls.CurveID{tls.X25519}},
		{ServerName: name, MinVersion: tls.VersionTLS13, ClientSessionCache: tls.NewLRUClientSessionCache(1)},
	} {
		cfg.InsecureSkipVerify = true
		f.Add(helloWith(f, cfg))
	}
	f.Add([]byte{22, 3, 1, 0, 4, 1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		name, err := ParseClientHello(b)
		if err != nil {
			return
		}
		if len(name) == 0 || len(name) > maxHostNameLen {
			t.Fatalf("bad name length %d", len(name))
		}
		for _, c := range []byte(name) {
			if c <= ' ' || c >= 0x7f {
				t.Fatalf("bad byte %#x in name", c)
			}
		}
	})
}
