package trust

import (
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// FuzzUnmarshalBundle feeds untrusted bytes, as read from etcd, to the
// bundle decoder and a bundle store: no panic, and every failure is one of
// the documented sentinels.
func FuzzUnmarshalBundle(f *testing.F) {
	ca := newTestCA(f, "b.test", nil)
	if _, err := ca.PrepareRoot(); err != nil {
		f.Fatal(err)
	}
	good, err := proto.Marshal(ca.TrustBundle(3, time.Minute))
	if err != nil {
		f.Fatal(err)
	}
	leaf := issue(f, ca, "spiffe://b.test/x").Certificates[0]
	notCA, _ := proto.Marshal(&straitv1.TrustBundle{TrustDomain: "b.test", Sequence: 1, X509Authorities: [][]byte{leaf.Raw}})
	f.Add(good)
	f.Add(notCA)
	f.Add(good[:len(good)/2])
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f})

	local := newTestCA(f, "a.test", nil)
	f.Fuzz(func(t *testing.T, data []byte) {
		rec, b, err := UnmarshalBundle(data)
		if err != nil {
			if !errors.Is(err, ErrInvalidBundle) && !errors.Is(err, ErrNotCA) {
				t.Fatalf("undocumented error: %v", err)
			}
			return
		}
		if b.TrustDomain().Name() != rec.GetTrustDomain() || len(b.X509Authorities()) == 0 {
			t.Fatalf("decoded bundle does not match its record")
		}
		for _, c := range b.X509Authorities() {
			if !c.IsCA {
				t.Fatal("a non-CA authority was accepted")
			}
		}
		store := newStore(t, local, nil)
		if err := store.Apply(rec); err != nil && !errors.Is(err, ErrNotFederated) {
			t.Fatalf("a valid record was refused: %v", err)
		}
	})
}
