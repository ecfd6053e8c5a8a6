package sni

import (
	"testing"
)

func FuzzParseClientHello(f *testing.F) {
	f.Add(hello(f, "9000.echo.default.any.strait"))
	f.Add(hello(f, "127.0.0.1"))
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
