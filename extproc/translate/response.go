package translate

import (
	"errors"
	"strings"

	"github.com/tollgate-dev/tollgate/extproc/tokencount"
)

// ResponseTranslator converts one provider response for the client and
// accumulates its usage. It is made per request and is not safe for
// concurrent use.
type ResponseTranslator interface {
	// Headers is called once with the provider's status and content type; it
	// returns the content type to send to the client. A status outside 2xx
	// makes the body an error body, translated by TranslateError at the end.
	Headers(status int, contentType string) (newContentType string)
	// Chunk takes the next piece of the provider's body and returns the bytes
	// to send to the client now (possibly none). Streams are translated
	// event by event as soon as an event is complete; other bodies are held
	// until endOfStream (passthrough bodies are forwarded at once). Like
	// io.Reader, it may return bytes together with an error: send the bytes
	// first. A *StreamError means the provider reported an error mid-stream;
	// a *ProviderResponseError means the provider's answer was unreadable.
	// After an error, Chunk returns nothing more.
	Chunk(b []byte, endOfStream bool) ([]byte, error)
	// Usage returns the usage reported so far; it is Estimated until the
	// provider's final report has been read. Until then each call counts
	// tokens: the request's on the first call, and the text generated since
	// the previous one, at about 150 ns a byte (docs/translation.md).
	Usage() Usage
}

// NewResponseTranslator returns the translator for a response to a request
// that TranslateRequest translated for t. o is ProviderRequest.Response with
// the caller's RequestID and Created added.
func NewResponseTranslator(api ClientAPI, t Target, o ResponseOptions) ResponseTranslator {
	d := &driver{api: api, kind: t.Kind, opts: o}
	d.m.enc = tokencount.ForModel(t.UpstreamModel)
	d.m.request = o.request
	if o.EstimatedInputTokens > 0 {
		d.m.estIn, d.m.inKnown = o.EstimatedInputTokens, true
	}
	if p, err := pairFor(api, t.Kind); err == nil {
		d.h = p.response(t, o)
	} else {
		// TranslateRequest refused this pair, so no provider answer should
		// arrive; forward whatever does.
		d.h = rawHandler{}
	}
	return d
}

// handler is the pair-specific half of a response translator; driver does
// the bookkeeping they share.
type handler interface {
	// contentType returns the client's content type for a successful
	// response, given the provider's.
	contentType(stream bool, upstream string) string
	// forwardsBody reports whether non-stream bodies go to the client
	// unchanged as they arrive (body is then called only to read usage, and
	// its output and error are ignored).
	forwardsBody() bool
	// body translates a whole non-stream body.
	body(dst, b []byte, m *usageMeter) ([]byte, error)
	// event translates one SSE event.
	event(dst []byte, ev *SSEEvent, m *usageMeter) ([]byte, error)
	// end is called when the provider's stream ended.
	end(dst []byte, m *usageMeter) ([]byte, error)
}

type bodyMode int

const (
	modeUnset bodyMode = iota
	modeJSON
	modeSSE
	modeError
)

// maxErrorBody bounds what is kept of a provider's error body.
const maxErrorBody = 64 << 10

type driver struct {
	api    ClientAPI
	kind   ProviderKind
	opts   ResponseOptions
	h      handler
	m      usageMeter
	status int
	mode   bodyMode
	buf    []byte
	sse    SSEParser
	done   bool
}

func (d *driver) Headers(status int, contentType string) string {
	d.status = status
	switch {
	case status < 200 || status > 299:
		d.mode = modeError
		// An error carries no usage: providers do not bill refused requests.
		d.m.report(Usage{}, true)
		return "application/json"
	case isEventStream(contentType), contentType == "" && d.opts.Stream:
		d.mode = modeSSE
		return d.h.contentType(true, contentType)
	default:
		d.mode = modeJSON
		return d.h.contentType(false, contentType)
	}
}

func isEventStream(ct string) bool {
	ct = strings.TrimSpace(ct)
	return len(ct) >= len("text/event-stream") && strings.EqualFold(ct[:len("text/event-stream")], "text/event-stream")
}

func (d *driver) Chunk(b []byte, endOfStream bool) ([]byte, error) {
	if d.done {
		return nil, nil
	}
	if d.mode == modeUnset {
		d.Headers(200, "")
	}
	switch d.mode {
	case modeError:
		if room := maxErrorBody - len(d.buf); room > 0 {
			d.buf = append(d.buf, b[:min(len(b), room)]...)
		}
		if !endOfStream {
			return nil, nil
		}
		d.done = true
		return TranslateError(d.api, d.kind, d.status, d.buf), nil
	case modeJSON:
		d.buf = append(d.buf, b...)
		if d.h.forwardsBody() {
			if endOfStream {
				d.done = true
				// Usage only. The body went out as it came, so a body the
				// handler cannot read is not an error for the client: its
				// usage just stays an estimate.
				_, _ = d.h.body(nil, d.buf, &d.m)
			}
			return b, nil
		}
		if !endOfStream {
			return nil, nil
		}
		d.done = true
		out, err := d.h.body(nil, d.buf, &d.m)
		if err != nil {
			return nil, d.wrap(err)
		}
		return out, nil
	}
	d.sse.Write(b)
	var out []byte
	for {
		ev, ok, err := d.sse.Next(endOfStream)
		if err != nil {
			d.done = true
			return out, d.wrap(err)
		}
		if !ok {
			break
		}
		out, err = d.h.event(out, &ev, &d.m)
		if err != nil {
			d.done = true
			return out, d.wrap(err)
		}
	}
	if endOfStream {
		d.done = true
		var err error
		out, err = d.h.end(out, &d.m)
		if err != nil {
			return out, d.wrap(err)
		}
	}
	return out, nil
}

func (d *driver) wrap(err error) error {
	var se *StreamError
	if errors.As(err, &se) {
		return err
	}
	return &ProviderResponseError{Provider: d.kind, Err: err}
}

func (d *driver) Usage() Usage { return d.m.usage() }

// rawHandler forwards everything unchanged.
type rawHandler struct{}

func (rawHandler) contentType(_ bool, upstream string) string { return upstream }
func (rawHandler) forwardsBody() bool                         { return true }
func (rawHandler) body(dst, _ []byte, _ *usageMeter) ([]byte, error) {
	return dst, nil
}
func (rawHandler) event(dst []byte, ev *SSEEvent, _ *usageMeter) ([]byte, error) {
	return append(dst, ev.Raw...), nil
}
func (rawHandler) end(dst []byte, _ *usageMeter) ([]byte, error) { return dst, nil }
