package testdataplane

import (
	"context"
	"errors"
	"io"
)

// bodySource yields an HTTP body chunk by chunk, as it flows through the
// filter chain: each filter wraps the source before it. eos comes with the
// last chunk, which may be empty; next is not called after it.
type bodySource interface {
	next(ctx context.Context) (data []byte, eos bool, err error)
}

// errBodyTooLarge is a buffered body over the buffer limit.
var errBodyTooLarge = errors.New("body exceeds the buffer limit")

// readAll buffers a whole body, as a buffering filter does, up to limit.
func readAll(ctx context.Context, b bodySource, limit int) ([]byte, error) {
	var out []byte
	for {
		data, eos, err := b.next(ctx)
		if err != nil {
			return nil, err
		}
		out = append(out, data...)
		if len(out) > limit {
			return nil, errBodyTooLarge
		}
		if eos {
			return out, nil
		}
	}
}

// bytesBody is a buffered body; with more set, the chunks of then follow.
type bytesBody struct {
	data []byte
	sent bool
	more bool
	then bodySource
}

func (b *bytesBody) next(ctx context.Context) ([]byte, bool, error) {
	if !b.sent {
		b.sent = true
		return b.data, !b.more, nil
	}
	if b.more {
		return b.then.next(ctx)
	}
	return nil, true, nil
}

// replacedBody is the body a CONTINUE_AND_REPLACE reply set: whatever of the
// original body arrives later is drained and dropped, as Envoy drains it.
type replacedBody struct {
	data        []byte
	orig        bodySource
	origHasBody bool
	done        bool
}

func (b *replacedBody) next(ctx context.Context) ([]byte, bool, error) {
	if b.done {
		return nil, true, nil
	}
	for b.origHasBody {
		_, eos, err := b.orig.next(ctx)
		if err != nil {
			return nil, false, err
		}
		if eos {
			break
		}
	}
	b.done = true
	return b.data, true, nil
}

// emptyBody has no data.
type emptyBody struct{}

func (emptyBody) next(context.Context) ([]byte, bool, error) { return nil, true, nil }

// readerBody reads an io.Reader (a client's or an upstream's body) chunk by
// chunk as the bytes arrive, so streamed bodies flow without waiting for
// the end. onData sees every chunk (byte counting and idle timers); mapErr
// classifies read errors.
type readerBody struct {
	r      io.Reader
	buf    []byte
	onData func(n int)
	mapErr func(error) error
}

func newReaderBody(r io.Reader, onData func(int), mapErr func(error) error) *readerBody {
	return &readerBody{r: r, buf: make([]byte, 32<<10), onData: onData, mapErr: mapErr}
}

func (b *readerBody) next(ctx context.Context) ([]byte, bool, error) {
	for {
		if err := ctx.Err(); err != nil {
			return nil, false, context.Cause(ctx)
		}
		n, err := b.r.Read(b.buf)
		if n > 0 && b.onData != nil {
			b.onData(n)
		}
		switch {
		case errors.Is(err, io.EOF):
			return append([]byte(nil), b.buf[:n]...), true, nil
		case err != nil:
			if ctx.Err() != nil {
				return nil, false, context.Cause(ctx)
			}
			return nil, false, b.mapErr(err)
		case n > 0:
			return append([]byte(nil), b.buf[:n]...), false, nil
		}
	}
}
