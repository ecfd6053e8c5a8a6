package tunnel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/protobuf/proto"

	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// ALPN is the TLS application protocol of the gateway tunnel. Its version
// changes whenever the framing or the meaning of a field does.
const ALPN = "strait/1"

// MaxFrameSize is the largest encoded StreamHeader or StreamReply, without
// its 2-byte length prefix.
const MaxFrameSize = 4096

// prefixLen is the size of a frame's length prefix.
const prefixLen = 2

// readDeadliner is implemented by connections and QUIC streams.
type readDeadliner interface {
	SetReadDeadline(time.Time) error
}

// WriteHeader writes h as one frame in a single Write.
func WriteHeader(w io.Writer, h *straitv1.StreamHeader) error {
	return writeFrame(w, h, nil)
}

// AppendHeader returns b followed by h framed, so that a caller can send the
// header and the first bytes of the stream in one Write.
func AppendHeader(b []byte, h *straitv1.StreamHeader) ([]byte, error) {
	return appendFrame(b, h)
}

// ReadHeader reads one header frame. When timeout is positive and r has a
// SetReadDeadline method, the read must complete within timeout; the deadline
// is cleared afterwards.
func ReadHeader(r io.Reader, timeout time.Duration) (*straitv1.StreamHeader, error) {
	h := &straitv1.StreamHeader{}
	if err := readFrame(r, timeout, h); err != nil {
		return nil, err
	}
	return h, nil
}

// WriteReply writes rep as one frame in a single Write.
func WriteReply(w io.Writer, rep *straitv1.StreamReply) error {
	return writeFrame(w, rep, nil)
}

// ReadReply reads one reply frame, under timeout as ReadHeader does. A reply
// with a code outside the closed set is returned as STREAM_CODE_INTERNAL.
func ReadReply(r io.Reader, timeout time.Duration) (*straitv1.StreamReply, error) {
	rep := &straitv1.StreamReply{}
	if err := readFrame(r, timeout, rep); err != nil {
		return nil, err
	}
	if c := rep.GetCode(); c != straitv1.StreamCode_STREAM_CODE_ACCEPTED {
		rep.Code = Known(c)
	}
	return rep, nil
}

// Err returns nil for an accepted reply and a *RefusedError otherwise.
func Err(rep *straitv1.StreamReply) error {
	if rep.GetCode() == straitv1.StreamCode_STREAM_CODE_ACCEPTED {
		return nil
	}
	return &RefusedError{Code: Known(rep.GetCode()), Message: rep.GetMessage()}
}

// DecodeHeader decodes a complete frame (prefix included) holding a header.
// It exists for tests and tools; ReadHeader is the data path.
func DecodeHeader(frame []byte) (*straitv1.StreamHeader, error) {
	h := &straitv1.StreamHeader{}
	if err := decodeFrame(frame, h); err != nil {
		return nil, err
	}
	return h, nil
}

func writeFrame(w io.Writer, m proto.Message, buf []byte) error {
	b, err := appendFrame(buf, m)
	if err != nil {
		return err
	}
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("tunnel: write frame: %w", err)
	}
	return nil
}

func appendFrame(b []byte, m proto.Message) ([]byte, error) {
	size := proto.Size(m)
	if size > MaxFrameSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrFrameTooLarge, size)
	}
	b = binary.BigEndian.AppendUint16(b, uint16(size))
	b, err := proto.MarshalOptions{}.MarshalAppend(b, m)
	if err != nil {
		return nil, fmt.Errorf("tunnel: encode frame: %w", err)
	}
	return b, nil
}

func readFrame(r io.Reader, timeout time.Duration, m proto.Message) error {
	if d, ok := r.(readDeadliner); ok && timeout > 0 {
		_ = d.SetReadDeadline(time.Now().Add(timeout))
		defer func() { _ = d.SetReadDeadline(time.Time{}) }()
	}
	var prefix [prefixLen]byte
	if _, err := io.ReadFull(r, prefix[:]); err != nil {
		return frameReadErr(err)
	}
	n := int(binary.BigEndian.Uint16(prefix[:]))
	if n > MaxFrameSize {
		return fmt.Errorf("%w: %d bytes", ErrFrameTooLarge, n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return frameReadErr(err)
	}
	return unmarshal(body, m)
}

func decodeFrame(frame []byte, m proto.Message) error {
	if len(frame) < prefixLen {
		return fmt.Errorf("%w: %d bytes", ErrBadFrame, len(frame))
	}
	n := int(binary.BigEndian.Uint16(frame))
	if n > MaxFrameSize {
		return fmt.Errorf("%w: %d bytes", ErrFrameTooLarge, n)
	}
	if len(frame)-prefixLen != n {
		return fmt.Errorf("%w: length %d, have %d bytes", ErrBadFrame, n, len(frame)-prefixLen)
	}
	return unmarshal(frame[prefixLen:], m)
}

func unmarshal(body []byte, m proto.Message) error {
	if err := proto.Unmarshal(body, m); err != nil {
		return fmt.Errorf("%w: %w", ErrBadFrame, err)
	}
	return nil
}

// frameReadErr marks a frame cut short by EOF as malformed; other errors
// (timeouts, resets) are returned wrapped as they are.
func frameReadErr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: truncated: %w", ErrBadFrame, err)
	}
	return fmt.Errorf("tunnel: read frame: %w", err)
}
