package sni

import "testing"

func BenchmarkParseClientHello(b *testing.B) {
	rec := hello(b, "9000.payments.default.any.strait")
	b.SetBytes(int64(len(rec)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseClientHello(rec); err != nil {
			b.Fatal(err)
		}
	}
}
