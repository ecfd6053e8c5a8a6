package federation

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/hashicorp/go-multierror"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// MaxRecordSize caps the size of a stored value. Larger values are rejected
// before they are decoded.
const MaxRecordSize = 64 << 10

// NewMessage returns an empty message of the type a kind of record holds,
// or nil for an unknown kind.
func NewMessage(kind Kind) proto.Message {
	switch kind {
	case KindGateway:
		return &straitv1.Gateway{}
	case KindExport:
		return &straitv1.Export{}
	case KindEndpoint:
		return &straitv1.Endpoint{}
	case KindBundle:
		return &straitv1.TrustBundle{}
	case KindConfig:
		return &straitv1.GatewayConfig{}
	}
	return nil
}

// EncodeRecord encodes a record for storage: deterministic binary protobuf.
func EncodeRecord(msg proto.Message) ([]byte, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("federation: encode %T: %w", msg, err)
	}
	return b, nil
}

// DecodeRecord decodes and validates the value stored at key, as the kind
// of record the key says. Values are binary protobuf or, when the first
// non-space byte is '{', protojson (so that operators can write them with
// etcdctl). Every error matches ErrInvalidRecord and is an
// *InvalidRecordError listing each problem found.
func DecodeRecord(ks Keyspace, key string, value []byte) (Record, error) {
	info, err := ks.Parse(key)
	if err != nil {
		return Record{}, &InvalidRecordError{Key: key, Reason: "key", Err: err}
	}
	msg, err := DecodeMessage(info.Kind, value)
	if err != nil {
		return Record{}, &InvalidRecordError{Key: key, Kind: info.Kind, Reason: reasonOf(err), Err: unwrapInvalid(err)}
	}
	if err := ValidateRecord(info, msg); err != nil {
		return Record{}, &InvalidRecordError{Key: key, Kind: info.Kind, Reason: "validate", Err: unwrapInvalid(err)}
	}
	return Record{Key: key, Info: info, Message: msg}, nil
}

// DecodeMessage decodes a value as a kind of record without validating it.
// Values larger than MaxRecordSize are rejected before decoding. Unknown
// fields are kept for every kind but configuration, where they are an
// error: a policy this binary does not understand must fail closed.
func DecodeMessage(kind Kind, value []byte) (proto.Message, error) {
	msg := NewMessage(kind)
	if msg == nil {
		return nil, &InvalidRecordError{Kind: kind, Reason: "key", Err: fmt.Errorf("unknown kind %q", kind)}
	}
	if len(value) > MaxRecordSize {
		return nil, &InvalidRecordError{Kind: kind, Reason: "size",
			Err: fmt.Errorf("value is %d bytes, more than the %d byte limit", len(value), MaxRecordSize)}
	}
	if isJSON(value) {
		if err := (protojson.UnmarshalOptions{}).Unmarshal(value, msg); err != nil {
			return nil, &InvalidRecordError{Kind: kind, Reason: "decode", Err: fmt.Errorf("protojson %s: %w", kind, err)}
		}
		return msg, nil
	}
	if err := (proto.UnmarshalOptions{}).Unmarshal(value, msg); err != nil {
		return nil, &InvalidRecordError{Kind: kind, Reason: "decode", Err: fmt.Errorf("protobuf %s: %w", kind, err)}
	}
	if kind == KindConfig && hasUnknownFields(msg) {
		return nil, &InvalidRecordError{Kind: kind, Reason: "decode",
			Err: errors.New("configuration has fields this version does not know")}
	}
	return msg, nil
}

// isJSON reports whether a value looks like protojson: its first non-space
// byte is '{'.
func isJSON(value []byte) bool {
	trimmed := bytes.TrimLeft(value, " \t\r\n")
	return len(trimmed) > 0 && trimmed[0] == '{'
}

// hasUnknownFields reports whether msg or any message inside it carries
// fields its schema does not define.
func hasUnknownFields(msg proto.Message) bool {
	found := false
	var walk func(m proto.Message)
	walk = func(m proto.Message) {
		r := m.ProtoReflect()
		if len(r.GetUnknown()) > 0 {
			found = true
			return
		}
		fields := r.Descriptor().Fields()
		for i := 0; i < fields.Len() && !found; i++ {
			fd := fields.Get(i)
			if fd.Message() == nil || !r.Has(fd) {
				continue
			}
			switch {
			case fd.IsList():
				l := r.Get(fd).List()
				for j := 0; j < l.Len(); j++ {
					walk(l.Get(j).Message().Interface())
				}
			case fd.IsMap():
				// No maps in the records today.
			default:
				walk(r.Get(fd).Message().Interface())
			}
		}
	}
	walk(msg)
	return found
}

// reasonOf returns the metric reason of a decode error.
func reasonOf(err error) string {
	var ire *InvalidRecordError
	if errors.As(err, &ire) {
		return ire.Reason
	}
	return "decode"
}

// unwrapInvalid strips an *InvalidRecordError to its problems, so that
// wrapping it again with a key does not repeat the prefix.
func unwrapInvalid(err error) error {
	var ire *InvalidRecordError
	if errors.As(err, &ire) && ire.Err != nil {
		return ire.Err
	}
	return err
}

// problems collects validation problems into one error.
type problems struct{ errs *multierror.Error }

func (p *problems) add(format string, args ...any) {
	p.errs = multierror.Append(p.errs, fmt.Errorf(format, args...))
}

func (p *problems) addErr(err error) {
	if err != nil {
		p.errs = multierror.Append(p.errs, err)
	}
}

func (p *problems) err() error {
	if p.errs == nil {
		return nil
	}
	p.errs.ErrorFormat = listFormat
	return p.errs.ErrorOrNil()
}

// listFormat renders several problems on one line, for logs.
func listFormat(errs []error) string {
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	if len(msgs) == 1 {
		return msgs[0]
	}
	return fmt.Sprintf("%d problems: %s", len(msgs), strings.Join(msgs, "; "))
}
