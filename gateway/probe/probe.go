package probe

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// The reserved destination of probe streams.
const (
	Namespace = "strait-system"
	Service   = "probe"
	Port      = 1
)

// NonceSize is the size of the caller's nonce.
const NonceSize = 32

// MaxFrameSize bounds a Signed frame: a statement and an SVID chain.
const MaxFrameSize = 64 << 10

// Version is the statement format.
const Version = 1

// signingContext separates probe signatures from any other use of an SVID
// key.
const signingContext = "strait probe statement v1\x00"

// DefaultMaxAge is how old a statement Verify accepts by default.
const DefaultMaxAge = time.Minute

// Errors that Verify and ReadSigned wrap; callers branch with errors.Is.
var (
	// ErrBadFrame: the frame is not a Signed statement.
	ErrBadFrame = errors.New("probe: malformed statement")
	// ErrIdentity: the signer's chain does not verify against the bundles
	// or names another SPIFFE ID than expected.
	ErrIdentity = errors.New("probe: signer identity")
	// ErrSignature: the signature does not verify.
	ErrSignature = errors.New("probe: bad signature")
	// ErrNonce: the statement answers another nonce, or is too old.
	ErrNonce = errors.New("probe: stale or foreign statement")
)

// IsProbe reports whether a stream header names the probe responder.
func IsProbe(h *straitv1.StreamHeader) bool {
	return h.GetNamespace() == Namespace && h.GetService() == Service
}

// Header is the stream header of a probe from sourceCluster to
// targetCluster.
func Header(sourceCluster, targetCluster string) *straitv1.StreamHeader {
	return &straitv1.StreamHeader{
		Service: Service, Namespace: Namespace, Port: Port,
		SourceCluster: sourceCluster, TargetCluster: targetCluster,
	}
}

// Statement is what a responder signs.
type Statement struct {
	Version int `json:"version"`
	// Nonce is the caller's nonce, echoed.
	Nonce []byte `json:"nonce"`
	// Responder is the SPIFFE ID of the signer; Cluster and Gateway name
	// the gateway that answered.
	Responder string `json:"responder"`
	Cluster   string `json:"cluster"`
	Gateway   string `json:"gateway"`
	// Caller is the SPIFFE ID the responder authenticated on the QUIC
	// connection that carried the probe.
	Caller string `json:"caller"`
	// Time is when the responder signed.
	Time time.Time `json:"time"`
}

// Signed is a statement, its signature and the signer's SVID chain (DER,
// leaf first).
type Signed struct {
	Statement []byte   `json:"statement"`
	Signature []byte   `json:"signature"`
	Chain     [][]byte `json:"chain"`
}

// Sign signs st with svid's key.
func Sign(st Statement, svid *x509svid.SVID) (*Signed, error) {
	if svid == nil || len(svid.Certificates) == 0 || svid.PrivateKey == nil {
		return nil, errors.New("probe: no SVID to sign with")
	}
	st.Version = Version
	body, err := json.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("probe: %w", err)
	}
	digest, opts := digestFor(svid.Certificates[0].PublicKey, body)
	sig, err := svid.PrivateKey.Sign(rand.Reader, digest, opts)
	if err != nil {
		return nil, fmt.Errorf("probe: sign: %w", err)
	}
	s := &Signed{Statement: body, Signature: sig}
	for _, c := range svid.Certificates {
		s.Chain = append(s.Chain, c.Raw)
	}
	return s, nil
}

// digestFor is what is signed for a key type: SHA-256 of the context and
// the statement, or for Ed25519 the message itself.
func digestFor(pub crypto.PublicKey, body []byte) ([]byte, crypto.SignerOpts) {
	msg := append([]byte(signingContext), body...)
	if _, ok := pub.(ed25519.PublicKey); ok {
		return msg, crypto.Hash(0)
	}
	sum := sha256.Sum256(msg)
	return sum[:], crypto.SHA256
}

// VerifyOptions say what Verify expects.
type VerifyOptions struct {
	// Want is the exact SPIFFE ID that must have signed. Required.
	Want spiffeid.ID
	// Nonce is the nonce the caller chose. Required.
	Nonce []byte
	// Now is the verification time. Zero means time.Now().
	Now time.Time
	// MaxAge bounds the statement's age (and clock skew into the future).
	// Zero means DefaultMaxAge.
	MaxAge time.Duration
}

// Verify checks s: the chain verifies against bundles and names exactly
// o.Want, the signature is the leaf's over the statement, and the
// statement answers o.Nonce recently. It returns the statement.
func Verify(s *Signed, bundles x509bundle.Source, o VerifyOptions) (*Statement, error) {
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if o.MaxAge <= 0 {
		o.MaxAge = DefaultMaxAge
	}
	if s == nil || len(s.Chain) == 0 {
		return nil, fmt.Errorf("%w: no certificate chain", ErrBadFrame)
	}
	id, chains, err := x509svid.ParseAndVerify(s.Chain, bundles, x509svid.WithTime(o.Now))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrIdentity, err)
	}
	if id != o.Want {
		return nil, fmt.Errorf("%w: signed by %s, want %s", ErrIdentity, id, o.Want)
	}
	leaf := chains[0][0]
	if err := verifySignature(leaf, s.Statement, s.Signature); err != nil {
		return nil, err
	}
	var st Statement
	if err := json.Unmarshal(s.Statement, &st); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadFrame, err)
	}
	switch {
	case st.Version != Version:
		return nil, fmt.Errorf("%w: statement version %d", ErrBadFrame, st.Version)
	case st.Responder != id.String():
		return nil, fmt.Errorf("%w: statement names %q, signed by %s", ErrIdentity, st.Responder, id)
	case len(o.Nonce) == 0 || !bytes.Equal(st.Nonce, o.Nonce):
		return nil, fmt.Errorf("%w: nonce does not match", ErrNonce)
	case st.Time.Before(o.Now.Add(-o.MaxAge)) || st.Time.After(o.Now.Add(o.MaxAge)):
		return nil, fmt.Errorf("%w: signed at %s", ErrNonce, st.Time.Format(time.RFC3339))
	}
	return &st, nil
}

func verifySignature(leaf *x509.Certificate, body, sig []byte) error {
	digest, _ := digestFor(leaf.PublicKey, body)
	ok := false
	switch pub := leaf.PublicKey.(type) {
	case *ecdsa.PublicKey:
		ok = ecdsa.VerifyASN1(pub, digest, sig)
	case ed25519.PublicKey:
		ok = ed25519.Verify(pub, digest, sig)
	case *rsa.PublicKey:
		ok = rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest, sig) == nil
	default:
		return fmt.Errorf("%w: unsupported key type %T", ErrSignature, pub)
	}
	if !ok {
		return ErrSignature
	}
	return nil
}

// WriteSigned writes s as one frame: a 4-byte big-endian length and the
// JSON form.
func WriteSigned(w io.Writer, s *Signed) error {
	body, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	if len(body) > MaxFrameSize {
		return fmt.Errorf("%w: %d bytes exceed %d", ErrBadFrame, len(body), MaxFrameSize)
	}
	buf := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(body)), uint32(len(body)))
	_, err = w.Write(append(buf, body...))
	return err
}

// ReadSigned reads one frame written by WriteSigned. Frames larger than
// MaxFrameSize are refused before their body is read.
func ReadSigned(r io.Reader) (*Signed, error) {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, fmt.Errorf("probe: read statement: %w", err)
	}
	size := binary.BigEndian.Uint32(n[:])
	if size > MaxFrameSize {
		return nil, fmt.Errorf("%w: frame of %d bytes exceeds %d", ErrBadFrame, size, MaxFrameSize)
	}
	body := make([]byte, size)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, fmt.Errorf("probe: read statement: %w", err)
	}
	return DecodeSigned(body)
}

// DecodeSigned parses the JSON form of a Signed statement.
func DecodeSigned(body []byte) (*Signed, error) {
	var s Signed
	if err := json.Unmarshal(body, &s); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadFrame, err)
	}
	if len(s.Chain) == 0 || len(s.Signature) == 0 || len(s.Statement) == 0 {
		return nil, fmt.Errorf("%w: statement, signature and chain are required", ErrBadFrame)
	}
	return &s, nil
}
