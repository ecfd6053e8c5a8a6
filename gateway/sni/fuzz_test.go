package sni

import (
	"bytes"
	"crypto/tls"
	"testing"
	"testing/iotest"
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

// FuzzReadClientHello reads arbitrary bytes from a connection-like reader
// (one byte per read, as a slow client sends them): a record is returned
// only with its name, it is a prefix of the input, and nothing beyond it
// was read.
func FuzzReadClientHello(f *testing.F) {
	f.Add(helloWith(f, &tls.Config{ServerName: "9000.echo.default.any.strait", InsecureSkipVerify: true}))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: hello.demo.svc.clusterset.local\r\n\r\n"))
	f.Add([]byte{22, 3, 1, 0, 4, 1, 0, 0, 0})
	f.Add([]byte{22})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		name, record, err := ReadClientHello(iotest.OneByteReader(r))
		read := len(b) - r.Len()
		if err != nil {
			if record != nil && name != "" {
				t.Fatalf("error %v with a name", err)
			}
			if len(b) > 0 && b[0] != recordTypeHandshake && read != 1 {
				t.Fatalf("read %d bytes of a non-handshake record, want 1", read)
			}
			return
		}
		if name == "" || !bytes.Equal(record, b[:len(record)]) || read != len(record) {
			t.Fatalf("name %q, record of %d bytes, read %d", name, len(record), read)
		}
	})
}
