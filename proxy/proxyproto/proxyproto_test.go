package proxyproto

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	id := []byte("spiffe://east.strait.local/ns/default/sa/client")
	tests := []struct {
		name string
		in   Header
		want Header // differs from in where the wire normalizes
		size int
	}{
		{
			name: "ipv4 with SPIFFE ID",
			in: Header{Command: Proxy,
				Source:      netip.MustParseAddrPort("10.0.0.1:40000"),
				Destination: netip.MustParseAddrPort("10.0.0.2:9000"),
				TLVs:        []TLV{{Type: TypeSPIFFEID, Value: id}}},
			size: 16 + 12 + 3 + len(id),
		},
		{
			name: "ipv6 with two TLVs",
			in: Header{Command: Proxy,
				Source:      netip.MustParseAddrPort("[2001:db8::1]:40000"),
				Destination: netip.MustParseAddrPort("[2001:db8::2]:9000"),
				TLVs:        []TLV{{Type: TypeAuthority, Value: []byte("9000.echo.default.any.strait")}, {Type: TypeSPIFFEID, Value: id}}},
			size: 16 + 36 + 3 + 28 + 3 + len(id),
		},
		{
			name: "mixed families are sent as ipv6",
			in: Header{Command: Proxy,
				Source:      netip.MustParseAddrPort("10.0.0.1:1"),
				Destination: netip.MustParseAddrPort("[2001:db8::2]:2")},
			want: Header{Command: Proxy,
				Source:      netip.MustParseAddrPort("[::ffff:10.0.0.1]:1"),
				Destination: netip.MustParseAddrPort("[2001:db8::2]:2")},
			size: 16 + 36,
		},
		{
			name: "ipv4-mapped pair is sent as ipv4",
			in: Header{Command: Proxy,
				Source:      netip.MustParseAddrPort("[::ffff:10.0.0.1]:1"),
				Destination: netip.MustParseAddrPort("[::ffff:10.0.0.2]:2")},
			want: Header{Command: Proxy,
				Source:      netip.MustParseAddrPort("10.0.0.1:1"),
				Destination: netip.MustParseAddrPort("10.0.0.2:2")},
			size: 16 + 12,
		},
		{name: "local", in: Header{Command: Local}, size: 16},
		{name: "proxy without addresses", in: Header{Command: Proxy}, size: 16},
		{name: "empty TLV value", in: Header{Command: Local, TLVs: []TLV{{Type: 0xE5, Value: []byte{}}}}, size: 19},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.in.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			if len(b) != tt.size {
				t.Errorf("size = %d, want %d", len(b), tt.size)
			}
			payload := []byte("GET / HTTP/1.1\r\n")
			br := bufio.NewReader(bytes.NewReader(append(b, payload...)))
			got, err := Read(br)
			if err != nil {
				t.Fatal(err)
			}
			want := tt.want
			if want.Command == 0 && want.Source == (netip.AddrPort{}) && tt.want.TLVs == nil {
				want = tt.in
			}
			if !reflect.DeepEqual(*got, want) {
				t.Errorf("got %+v, want %+v", *got, want)
			}
			rest, _ := io.ReadAll(br)
			if !bytes.Equal(rest, payload) {
				t.Errorf("payload after header = %q, want %q", rest, payload)
			}
			if p, err := Parse(b); err != nil || !reflect.DeepEqual(*p, want) {
				t.Errorf("Parse = %+v, %v", p, err)
			}
		})
	}
}

func TestSPIFFEID(t *testing.T) {
	h := Header{TLVs: []TLV{{Type: TypeAuthority, Value: []byte("a")}, {Type: TypeSPIFFEID, Value: []byte("spiffe://x/y")}}}
	if id, ok := h.SPIFFEID(); !ok || id != "spiffe://x/y" {
		t.Errorf("SPIFFEID() = %q, %v", id, ok)
	}
	if a, ok := h.Authority(); !ok || a != "a" {
		t.Errorf("Authority() = %q, %v", a, ok)
	}
	if _, ok := (&Header{}).SPIFFEID(); ok {
		t.Error("SPIFFEID() found in an empty header")
	}
}

func valid(t testing.TB) []byte {
	h := Header{Command: Proxy,
		Source:      netip.MustParseAddrPort("10.0.0.1:40000"),
		Destination: netip.MustParseAddrPort("10.0.0.2:9000"),
		TLVs:        []TLV{{Type: TypeSPIFFEID, Value: []byte("spiffe://td/ns/a/sa/b")}}}
	b, err := h.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestReadErrors(t *testing.T) {
	mut := func(f func(b []byte) []byte) []byte { return f(valid(t)) }
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, io.EOF},
		{"http request", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), ErrNoHeader},
		{"short non-header", []byte("GET"), ErrNoHeader},
		{"truncated signature", valid(t)[:8], io.ErrUnexpectedEOF},
		{"truncated body", valid(t)[:30], io.ErrUnexpectedEOF},
		{"version 1", mut(func(b []byte) []byte { b[12] = 0x11; return b }), ErrUnsupported},
		{"bad command", mut(func(b []byte) []byte { b[12] = 0x22; return b }), ErrMalformed},
		{"unix family", mut(func(b []byte) []byte { b[13] = 0x31; return b }), ErrUnsupported},
		{"udp", mut(func(b []byte) []byte { b[13] = 0x12; return b }), ErrUnsupported},
		{"family 5", mut(func(b []byte) []byte { b[13] = 0x51; return b }), ErrMalformed},
		{"too large", mut(func(b []byte) []byte { b[14], b[15] = 0xFF, 0xFF; return b }), ErrTooLarge},
		{"address block short", mut(func(b []byte) []byte { b[14], b[15] = 0, 4; return b[:20] }), ErrMalformed},
		{"TLV overruns", mut(func(b []byte) []byte { b[30] = 0xFF; return b }), ErrMalformed},
		{"TLV truncated", mut(func(b []byte) []byte { b[15]++; return append(b, 0xE1) }), ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Read(bufio.NewReader(bytes.NewReader(tt.in)))
			if !errors.Is(err, tt.want) {
				t.Errorf("Read() error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestReadNoHeaderConsumesNothing(t *testing.T) {
	br := bufio.NewReader(strings.NewReader("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	if _, err := Read(br); !errors.Is(err, ErrNoHeader) {
		t.Fatalf("Read() error = %v", err)
	}
	rest, _ := io.ReadAll(br)
	if !strings.HasPrefix(string(rest), "GET /") {
		t.Errorf("Read consumed bytes: rest = %q", rest)
	}
}

func TestEncodeErrors(t *testing.T) {
	tests := []struct {
		name string
		h    Header
	}{
		{"one address", Header{Command: Proxy, Source: netip.MustParseAddrPort("10.0.0.1:1")}},
		{"bad command", Header{Command: 7}},
		{"oversized TLV", Header{Command: Local, TLVs: []TLV{{Type: 1, Value: make([]byte, 70000)}}}},
		{"header over cap", Header{Command: Local, TLVs: []TLV{{Type: 1, Value: make([]byte, MaxHeaderSize)}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tt.h.MarshalBinary(); err == nil {
				t.Error("MarshalBinary() succeeded")
			}
		})
	}
}

func FuzzReadHeader(f *testing.F) {
	f.Add(valid(f))
	f.Add([]byte("GET / HTTP/1.1\r\n"))
	local, _ := (&Header{Command: Local}).MarshalBinary()
	f.Add(local)
	v6, _ := (&Header{Command: Proxy, Source: netip.MustParseAddrPort("[::1]:1"), Destination: netip.MustParseAddrPort("[::2]:2"),
		TLVs: []TLV{{Type: TypeAuthority, Value: []byte("x")}}}).MarshalBinary()
	f.Add(v6)
	f.Fuzz(func(t *testing.T, in []byte) {
		br := bufio.NewReader(bytes.NewReader(in))
		h, err := Read(br)
		if err != nil {
			return
		}
		rest, _ := io.ReadAll(br)
		if consumed := len(in) - len(rest); consumed > MaxHeaderSize {
			t.Fatalf("consumed %d bytes, more than the cap", consumed)
		}
		// A decoded header must encode, and decode again to the same value.
		b, err := h.MarshalBinary()
		if err != nil {
			t.Fatalf("decoded header does not encode: %v (%+v)", err, h)
		}
		h2, err := Parse(b)
		if err != nil {
			t.Fatalf("re-encoded header does not parse: %v", err)
		}
		if !sameHeader(h, h2) {
			t.Fatalf("round trip changed the header: %+v -> %+v", h, h2)
		}
	})
}

func BenchmarkEncode(b *testing.B) {
	h := Header{Command: Proxy,
		Source:      netip.MustParseAddrPort("10.0.0.1:40000"),
		Destination: netip.MustParseAddrPort("10.0.0.2:9000"),
		TLVs:        []TLV{{Type: TypeSPIFFEID, Value: []byte("spiffe://east.strait.local/ns/default/sa/client")}}}
	buf := make([]byte, 0, 128)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = h.AppendBinary(buf[:0]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	in := valid(b)
	r := bytes.NewReader(in)
	br := bufio.NewReader(r)
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		r.Reset(in)
		br.Reset(r)
		if _, err := Read(br); err != nil {
			b.Fatal(err)
		}
	}
}

// sameHeader compares headers up to IPv4-mapped addresses.
func sameHeader(a, b *Header) bool {
	unmap := func(ap netip.AddrPort) netip.AddrPort { return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()) }
	return a.Command == b.Command && unmap(a.Source) == unmap(b.Source) &&
		unmap(a.Destination) == unmap(b.Destination) && reflect.DeepEqual(a.TLVs, b.TLVs)
}
