package tunnel

import (
	"bytes"
	"testing"

	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

func benchHeader() *straitv1.StreamHeader {
	return &straitv1.StreamHeader{
		Service: "payments", Namespace: "default", Port: 9000, SourceCluster: "west", TargetCluster: "any",
		ServerName: "9000.payments.default.any.strait",
	}
}

func BenchmarkAppendHeader(b *testing.B) {
	h := benchHeader()
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = AppendHeader(buf[:0], h); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReadHeader(b *testing.B) {
	frame, _ := AppendHeader(nil, benchHeader())
	r := bytes.NewReader(frame)
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(frame)
		if _, err := ReadHeader(r, 0); err != nil {
			b.Fatal(err)
		}
	}
}
