package tunnel

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

func TestHeaderRoundTrip(t *testing.T) {
	h := &straitv1.StreamHeader{Service: "echo", Namespace: "default", Port: 9000, SourceCluster: "a", TargetCluster: "b", ServerName: "9000.echo.default.b.strait"}
	var buf bytes.Buffer
	if err := WriteHeader(&buf, h); err != nil {
		t.Fatal(err)
	}
	got, err := ReadHeader(&buf, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, h) {
		t.Fatalf("got %v, want %v", got, h)
	}
}

func TestReadHeaderErrors(t *testing.T) {
	big := make([]byte, 2)
	binary.BigEndian.PutUint16(big, MaxFrameSize+1)
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrBadFrame},
		{"short prefix", []byte{0}, ErrBadFrame},
		{"too large", big, ErrFrameTooLarge},
		{"max prefix", []byte{0xff, 0xff}, ErrFrameTooLarge},
		{"truncated body", []byte{0, 4, 0x0a}, ErrBadFrame},
		{"bad protobuf", []byte{0, 2, 0x0a, 0x05}, ErrBadFrame},
		{"varint overflow", []byte{0, 11, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, ErrBadFrame},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadHeader(bytes.NewReader(tt.in), 0)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestWriteHeaderTooLarge(t *testing.T) {
	h := &straitv1.StreamHeader{Service: strings.Repeat("x", MaxFrameSize)}
	if err := WriteHeader(&bytes.Buffer{}, h); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("got %v, want ErrFrameTooLarge", err)
	}
}

func TestReplyUnknownCodeIsInternal(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteReply(&buf, &straitv1.StreamReply{Code: 99, Message: "m"}); err != nil {
		t.Fatal(err)
	}
	rep, err := ReadReply(&buf, 0)
	if err != nil {
		t.Fatal(err)
	}
	err = Err(rep)
	if !errors.Is(err, &RefusedError{Code: straitv1.StreamCode_STREAM_CODE_INTERNAL}) || !errors.Is(err, &RefusedError{}) {
		t.Fatalf("got %v, want INTERNAL refusal", err)
	}
	if errors.Is(err, &RefusedError{Code: straitv1.StreamCode_STREAM_CODE_DRAINING}) {
		t.Fatal("matched another code")
	}
}

func TestRefusal(t *testing.T) {
	for code := range straitv1.StreamCode_name {
		c := straitv1.StreamCode(code)
		var buf bytes.Buffer
		if err := WriteRefusal(&buf, c); err != nil {
			t.Fatal(err)
		}
		b := buf.Bytes()
		if len(b) != RefusalLen || b[0] != 21 || b[5] != 2 {
			t.Fatalf("refusal % x", b)
		}
		got, ok := ParseRefusal(b)
		want := c
		if c == straitv1.StreamCode_STREAM_CODE_UNSPECIFIED || c == straitv1.StreamCode_STREAM_CODE_ACCEPTED {
			want = straitv1.StreamCode_STREAM_CODE_INTERNAL
		}
		if !ok || got != want {
			t.Fatalf("code %v: parsed %v %v", c, got, ok)
		}
	}
	notRefusals := [][]byte{
		{21, 3, 3, 0, 2, 2, 40},        // handshake_failure from the destination
		{21, 3, 3, 0, 2, 1, 230},       // warning level
		{22, 3, 3, 0, 2, 2, 230},       // handshake record
		{21, 3, 1, 0, 2, 2, 230},       // other version
		{21, 3, 3, 0, 2, 2},            // short
		{0x16, 0x03, 0x03, 0x00, 0x7a}, // ServerHello record header
	}
	for _, b := range notRefusals {
		if code, ok := ParseRefusal(b); ok {
			t.Errorf("% x parsed as refusal %v", b, code)
		}
	}
}

func TestCodeName(t *testing.T) {
	if got := CodeName(straitv1.StreamCode_STREAM_CODE_NOT_EXPORTED); got != "not_exported" {
		t.Fatalf("got %q", got)
	}
	if got := CodeName(42); got != "internal" {
		t.Fatalf("got %q", got)
	}
}
