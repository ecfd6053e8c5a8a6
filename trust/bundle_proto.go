package trust

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"slices"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// Limits on bundle records, which come from etcd and are not trusted.
const (
	// MaxBundleAuthorities bounds the authorities of one bundle record.
	MaxBundleAuthorities = 64
	// MaxBundleRecordSize bounds the encoded size of one bundle record.
	MaxBundleRecordSize = 1 << 20
)

// BundleToProto encodes an X.509 bundle as the TrustBundle record published
// at trust/<trust-domain>. The publisher picks the sequence: it must grow
// with every change of the authorities. A zero refreshHint or updatedAt is
// left unset.
func BundleToProto(b *x509bundle.Bundle, sequence uint64, refreshHint time.Duration, updatedAt time.Time) *straitv1.TrustBundle {
	rec := &straitv1.TrustBundle{
		TrustDomain: b.TrustDomain().Name(),
		Sequence:    sequence,
	}
	for _, c := range b.X509Authorities() {
		rec.X509Authorities = append(rec.X509Authorities, c.Raw)
	}
	if refreshHint > 0 {
		rec.RefreshHint = durationpb.New(refreshHint)
	}
	if !updatedAt.IsZero() {
		rec.UpdatedAt = timestamppb.New(updatedAt)
	}
	return rec
}

// TrustBundle returns the CA's bundle as a TrustBundle record with the given
// sequence and refresh hint, ready for the federation store's PublishBundle.
func (c *CA) TrustBundle(sequence uint64, refreshHint time.Duration) *straitv1.TrustBundle {
	return BundleToProto(c.Bundle(), sequence, refreshHint, c.now())
}

// BundleFromProto decodes and validates a TrustBundle record: a valid trust
// domain name, one to MaxBundleAuthorities distinct authorities, each a DER
// CA certificate (basic constraints CA, and cert-sign key usage when key
// usage is present). Errors match ErrInvalidBundle or ErrNotCA.
func BundleFromProto(rec *straitv1.TrustBundle) (*x509bundle.Bundle, error) {
	if rec == nil {
		return nil, fmt.Errorf("%w: nil record", ErrInvalidBundle)
	}
	td, err := spiffeid.TrustDomainFromString(rec.GetTrustDomain())
	if err != nil {
		return nil, fmt.Errorf("%w: trust domain %q: %w", ErrInvalidBundle, rec.GetTrustDomain(), err)
	}
	raw := rec.GetX509Authorities()
	switch {
	case len(raw) == 0:
		return nil, fmt.Errorf("%w: %s has no X.509 authority", ErrInvalidBundle, td.Name())
	case len(raw) > MaxBundleAuthorities:
		return nil, fmt.Errorf("%w: %s has %d authorities, more than %d", ErrInvalidBundle, td.Name(), len(raw), MaxBundleAuthorities)
	}
	if d := rec.GetRefreshHint(); d != nil && (d.CheckValid() != nil || d.AsDuration() < 0) {
		return nil, fmt.Errorf("%w: %s has an invalid refresh hint", ErrInvalidBundle, td.Name())
	}
	b := x509bundle.New(td)
	for i, der := range raw {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("%w: %s authority %d: %w", ErrInvalidBundle, td.Name(), i, err)
		}
		if !cert.BasicConstraintsValid || !cert.IsCA {
			return nil, fmt.Errorf("%w: %s authority %d (%s)", ErrNotCA, td.Name(), i, cert.Subject)
		}
		if cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageCertSign == 0 {
			return nil, fmt.Errorf("%w: %s authority %d (%s) lacks cert-sign key usage", ErrNotCA, td.Name(), i, cert.Subject)
		}
		b.AddX509Authority(cert) // ignores duplicates
	}
	return b, nil
}

// UnmarshalBundle decodes an etcd value holding a TrustBundle record and
// validates it with BundleFromProto.
func UnmarshalBundle(data []byte) (*straitv1.TrustBundle, *x509bundle.Bundle, error) {
	if len(data) > MaxBundleRecordSize {
		return nil, nil, fmt.Errorf("%w: record of %d bytes, more than %d", ErrInvalidBundle, len(data), MaxBundleRecordSize)
	}
	rec := &straitv1.TrustBundle{}
	if err := proto.Unmarshal(data, rec); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrInvalidBundle, err)
	}
	b, err := BundleFromProto(rec)
	if err != nil {
		return nil, nil, err
	}
	return rec, b, nil
}

// sameAuthorities reports whether two bundles hold the same authorities, in
// any order.
func sameAuthorities(a, b *x509bundle.Bundle) bool {
	ra, rb := rawSorted(a), rawSorted(b)
	return slices.EqualFunc(ra, rb, bytes.Equal)
}

func rawSorted(b *x509bundle.Bundle) [][]byte {
	var out [][]byte
	for _, c := range b.X509Authorities() {
		out = append(out, c.Raw)
	}
	slices.SortFunc(out, bytes.Compare)
	return out
}
