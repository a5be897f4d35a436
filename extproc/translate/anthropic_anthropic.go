package translate

import (
	"encoding/json"
	"errors"
)

// anthropicPassthrough serves Anthropic Messages clients from Anthropic: the
// body keeps every byte but the top-level "model" (and "max_tokens" under a
// Target.MaxOutputTokens cap), and usage is read from
// message_start and message_delta events on the way through.
type anthropicPassthrough struct{}

func (anthropicPassthrough) request(t Target, body []byte) (ProviderRequest, error) {
	if err := checkObject(body); err != nil {
		return ProviderRequest{}, err
	}
	names := []string{"model", "stream"}
	if t.MaxOutputTokens > 0 {
		names = append(names, "max_tokens")
	}
	spans, found, end, err := topLevel(body, names...)
	if err != nil {
		return ProviderRequest{}, scanError(err)
	}
	if err := checkModel(body, spans[0], found[0]); err != nil {
		return ProviderRequest{}, err
	}
	var resp ResponseOptions
	if found[1] {
		switch v := body[spans[1].start:spans[1].end]; string(v) {
		case "true":
			resp.Stream = true
		case "false", "null":
		default:
			return ProviderRequest{}, badRequest(CodeInvalidType, "stream", "Invalid type for 'stream': expected a boolean, got %s.", jsonKind(v))
		}
	}
	edits := []edit{{spans[0].start, spans[0].end, appendJSONString(nil, t.UpstreamModel)}}
	if t.MaxOutputTokens > 0 {
		// max_tokens is required: lowered when above the cap, and set to
		// it in a request that lacks one.
		capEdits, err := outputCapEdits(body, skipSpace(body, 0), end, names[2:], spans[2:], found[2:], "max_tokens", t.MaxOutputTokens)
		if err != nil {
			return ProviderRequest{}, err
		}
		edits = append(edits, capEdits...)
	}
	return ProviderRequest{
		Method:   "POST",
		Path:     t.path("/v1/messages"),
		Body:     applyEdits(body, edits),
		Headers:  []Header{{Name: "anthropic-version", Value: anthropicVersion(t), IfAbsent: true}},
		Response: resp,
	}, nil
}

func anthropicVersion(t Target) string {
	if t.APIVersion != "" {
		return t.APIVersion
	}
	return DefaultAnthropicVersion
}

func (anthropicPassthrough) response(Target, ResponseOptions) handler {
	return &anthropicPassthroughHandler{}
}

type anthropicPassthroughHandler struct {
	acc anthropicUsage
}

func (*anthropicPassthroughHandler) contentType(_ bool, upstream string) string { return upstream }
func (*anthropicPassthroughHandler) forwardsBody() bool                         { return true }

func (*anthropicPassthroughHandler) body(dst, b []byte, m *usageMeter) ([]byte, error) {
	spans, found, _, err := topLevel(b, "usage", "content")
	if err != nil {
		return dst, nil //nolint:nilerr // the body went out as it came; its usage stays an estimate
	}
	if found[0] {
		var u anthropicUsage
		if decodeUsage(b, spans[0], &u) {
			m.report(u.usage(), true)
		}
	}
	if found[1] {
		// Counted only when no usage was reported (Anthropic-compatible
		// servers that send none).
		m.addAnthropicContent(b, spans[1])
	}
	return dst, nil
}

func (h *anthropicPassthroughHandler) event(dst []byte, ev *SSEEvent, m *usageMeter) ([]byte, error) {
	dst = append(dst, ev.Raw...)
	if !ev.HasData {
		return dst, nil
	}
	if err := anthropicUsageEvent(ev, m, &h.acc); err != nil {
		// se is declared here, not above, so that events without an error
		// do not pay for its escape to the heap.
		var se *StreamError
		if errors.As(err, &se) {
			return dst, err
		}
	}
	// An event Tollgate cannot read still reaches the client as sent; only
	// the usage becomes an estimate.
	return dst, nil
}

// anthropicUsageEvent reads usage (and errors) from an Anthropic stream
// event. message_start reports input tokens and a first output count;
// message_delta reports the final output count and may repeat or correct the
// input counts (its fields replace message_start's). into accumulates them.
func anthropicUsageEvent(ev *SSEEvent, m *usageMeter, into *anthropicUsage) error {
	typ := anthropicEventType(ev)
	switch typ {
	case "content_block_delta":
		if !m.final {
			m.addAnthropicDelta(ev.Data)
		}
		return nil
	case "message_start", "message_delta", "error":
	default:
		return nil
	}
	var e anthropicEvent
	if err := json.Unmarshal(ev.Data, &e); err != nil {
		return err
	}
	switch typ {
	case "message_start":
		if e.Message != nil {
			into.merge(e.Message.Usage)
			m.report(into.usage(), false)
		}
	case "message_delta":
		into.merge(e.Usage)
		m.report(into.usage(), true)
	case "error":
		se := &StreamError{Type: "api_error", Message: "The provider reported an error."}
		if e.Error != nil {
			se.Type, se.Message = e.Error.Type, e.Error.Message
		}
		return se
	}
	return nil
}

func (*anthropicPassthroughHandler) end(dst []byte, _ *usageMeter) ([]byte, error) {
	return dst, nil
}
