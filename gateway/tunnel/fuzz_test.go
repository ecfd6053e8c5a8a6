package tunnel

import (
	"bytes"
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"

	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

func FuzzReadHeader(f *testing.F) {
	seed, _ := AppendHeader(nil, &straitv1.StreamHeader{Service: "echo", Namespace: "default", Port: 9000, SourceCluster: "a", TargetCluster: "any", ServerName: "9000.echo.default.any.strait"})
	f.Add(seed)
	f.Add([]byte{0, 0})
	f.Add([]byte{0x10, 0x01})
	f.Add([]byte{0, 3, 0x18, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ReadHeader(bytes.NewReader(b), 0)
		if err != nil {
			if !errors.Is(err, ErrBadFrame) && !errors.Is(err, ErrFrameTooLarge) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		// A decoded header re-encodes within the limit and decodes equal.
		out, err := AppendHeader(nil, h)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		h2, err := DecodeHeader(out)
		if err != nil || !proto.Equal(h, h2) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

func FuzzReadReply(f *testing.F) {
	var buf bytes.Buffer
	_ = WriteReply(&buf, &straitv1.StreamReply{Code: straitv1.StreamCode_STREAM_CODE_NO_ENDPOINT, Message: "none"})
	f.Add(buf.Bytes())
	f.Add([]byte{0, 2, 0x08, 0x63})
	f.Fuzz(func(t *testing.T, b []byte) {
		rep, err := ReadReply(bytes.NewReader(b), 0)
		if err != nil {
			return
		}
		c := rep.GetCode()
		if c != straitv1.StreamCode_STREAM_CODE_ACCEPTED && Known(c) != c {
			t.Fatalf("code %v outside the closed set", c)
		}
		if c == straitv1.StreamCode_STREAM_CODE_UNSPECIFIED {
			t.Fatal("unspecified code returned")
		}
		_ = Err(rep)
	})
}

func FuzzParseRefusal(f *testing.F) {
	r := Refusal(straitv1.StreamCode_STREAM_CODE_DRAINING)
	f.Add(r[:])
	f.Fuzz(func(t *testing.T, b []byte) {
		code, ok := ParseRefusal(b)
		if ok && (code == straitv1.StreamCode_STREAM_CODE_ACCEPTED || Known(code) != code) {
			t.Fatalf("bad code %v", code)
		}
	})
}
