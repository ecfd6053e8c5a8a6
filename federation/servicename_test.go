package federation

import (
	"errors"
	"strings"
	"testing"
)

func TestParseServiceName(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want ServiceName // zero: an error is wanted
	}{
		{"9000.payments.default.any.strait", ServiceName{9000, ServiceKey{"default", "payments"}, AnyCluster}},
		{"9000.payments.default.west.strait", ServiceName{9000, ServiceKey{"default", "payments"}, "west"}},
		{"1.a.b.c.strait", ServiceName{1, ServiceKey{"b", "a"}, "c"}},
		{"65535.x-y.n0.w-1.strait", ServiceName{65535, ServiceKey{"n0", "x-y"}, "w-1"}},
		{"8080.Hello.Default.WEST.STRAIT", ServiceName{8080, ServiceKey{"default", "hello"}, "west"}},
		{"80." + strings.Repeat("a", 63) + ".ns.any.strait", ServiceName{80, ServiceKey{"ns", strings.Repeat("a", 63)}, AnyCluster}},
		{"", ServiceName{}},
		{"strait", ServiceName{}},
		{".strait", ServiceName{}},
		{"8080.hello.default.any", ServiceName{}},
		{"8080.hello.default.any.strait.", ServiceName{}},
		{"8080.hello.default.strait", ServiceName{}},
		{"8080.hello.default.any.west.strait", ServiceName{}},
		{"0.hello.default.any.strait", ServiceName{}},
		{"08080.hello.default.any.strait", ServiceName{}},
		{"65536.hello.default.any.strait", ServiceName{}},
		{"+80.hello.default.any.strait", ServiceName{}},
		{"-1.hello.default.any.strait", ServiceName{}},
		{"0x50.hello.default.any.strait", ServiceName{}},
		{"http.hello.default.any.strait", ServiceName{}},
		{"80..default.any.strait", ServiceName{}},
		{"80.-hello.default.any.strait", ServiceName{}},
		{"80.hello-.default.any.strait", ServiceName{}},
		{"80.hello_x.default.any.strait", ServiceName{}},
		{"80.hello.default.any .strait", ServiceName{}},
		{"80." + strings.Repeat("a", 64) + ".ns.any.strait", ServiceName{}},
		// Only ASCII folds: U+212A KELVIN SIGN lowers to "k", but an SNI
		// host name is ASCII and "\u212aello" is not "kello".
		{"80.\u212aello.default.any.strait", ServiceName{}},
		{"80.hello.default.any.\u212a.strait", ServiceName{}},
		{"80.hello.default.any.str\xffait", ServiceName{}},
	} {
		got, err := ParseServiceName(tt.in)
		if tt.want == (ServiceName{}) {
			if err == nil {
				t.Errorf("ParseServiceName(%q) = %+v, want an error", tt.in, got)
			} else if !errors.Is(err, ErrBadServiceName) {
				t.Errorf("ParseServiceName(%q) error %v is not ErrBadServiceName", tt.in, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseServiceName(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
		if s := got.String(); s != strings.ToLower(tt.in) {
			t.Errorf("ParseServiceName(%q).String() = %q", tt.in, s)
		}
	}
}

// FuzzParseServiceName parses the SNI of an untrusted ClientHello (egress
// gateway, inbound proxy). Seeds: testdata/fuzz/FuzzParseServiceName. A name
// it accepts is ASCII and renders back to itself in lower case, and it parses
// again to the same value; a name it refuses is an ErrBadServiceName.
func FuzzParseServiceName(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseServiceName(s)
		if err != nil {
			if !errors.Is(err, ErrBadServiceName) {
				t.Fatalf("ParseServiceName(%q) error %v is not ErrBadServiceName", s, err)
			}
			return
		}
		if n.Port == 0 {
			t.Fatalf("ParseServiceName(%q) accepted port 0", s)
		}
		for _, l := range []string{n.Service.Name, n.Service.Namespace, n.Cluster} {
			if err := ValidateLabel(l); err != nil {
				t.Fatalf("ParseServiceName(%q) = %+v with a bad label: %v", s, n, err)
			}
		}
		if r := n.String(); r != asciiLower(s) {
			t.Fatalf("ParseServiceName(%q) = %+v renders as %q, want %q", s, n, r, asciiLower(s))
		}
		again, err := ParseServiceName(n.String())
		if err != nil || again != n {
			t.Fatalf("ParseServiceName(%q) = %+v, %v; from %q: %+v", n.String(), again, err, s, n)
		}
	})
}

// asciiLower lowers A-Z only, as DNS compares names.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
