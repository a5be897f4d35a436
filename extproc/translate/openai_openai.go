package translate

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/url"
)

// openAIPassthrough serves OpenAI clients (Chat Completions, Embeddings,
// Responses) from OpenAI, Azure OpenAI and OpenAI-compatible providers. The
// body is not re-encoded: only the top-level "model" (and, where asked,
// "store", "stream_options" and the output limit) is rewritten in place, so
// fields Tollgate does not know reach the provider byte for byte.
type openAIPassthrough struct{ api ClientAPI }

func (p openAIPassthrough) request(t Target, body []byte) (ProviderRequest, error) {
	if err := checkObject(body); err != nil {
		return ProviderRequest{}, err
	}
	const (
		iModel = iota
		iStream
		iStreamOptions
		iStore
		iMessages
		iPrevious
		iConversation
		iLimits // the output limits, looked up only with a cap in force
	)
	names := []string{"model", "stream", "stream_options", "store", "messages", "previous_response_id", "conversation"}
	limits := p.outputLimits(t)
	if t.MaxOutputTokens > 0 {
		// A duplicate limit is refused only then: a provider that reads the
		// last of two could otherwise see one the cap never saw.
		names = append(names, limits...)
	}
	spans, found, end, err := topLevel(body, names...)
	if err != nil {
		return ProviderRequest{}, scanError(err)
	}
	if err := checkModel(body, spans[iModel], found[iModel]); err != nil {
		return ProviderRequest{}, err
	}
	var edits []edit
	edits = append(edits, edit{spans[iModel].start, spans[iModel].end, appendJSONString(nil, t.UpstreamModel)})

	var resp ResponseOptions
	if p.api != OpenAIEmbeddings && found[iStream] {
		v := body[spans[iStream].start:spans[iStream].end]
		switch string(v) {
		case "true":
			resp.Stream = true
		case "false", "null":
		default:
			return ProviderRequest{}, badRequest(CodeInvalidType, "stream", "Invalid type for 'stream': expected a boolean, got %s.", jsonKind(v))
		}
	}
	if p.api == OpenAIChat && resp.Stream {
		// Usage in a stream comes only in a final chunk that the client must
		// ask for; Tollgate always asks, and removes the chunk again for a
		// client that did not (see the response side).
		if !found[iStreamOptions] || isNull(body[spans[iStreamOptions].start:spans[iStreamOptions].end]) {
			v := []byte(`{"include_usage":true}`)
			if found[iStreamOptions] {
				edits = append(edits, edit{spans[iStreamOptions].start, spans[iStreamOptions].end, v})
			} else {
				edits = append(edits, insertMember(body, skipSpace(body, 0), end, "stream_options", v))
			}
		} else {
			e, include, err := forceIncludeUsage(body, spans[iStreamOptions])
			if err != nil {
				return ProviderRequest{}, err
			}
			resp.IncludeUsage = include
			if e != nil {
				edits = append(edits, *e)
			}
		}
	}
	if p.api == OpenAIChat && found[iMessages] && !acceptsDeveloperRole(t) && bytes.Contains(body[spans[iMessages].start:spans[iMessages].end], []byte(`"developer"`)) {
		edits = append(edits, developerToSystem(body, spans[iMessages])...)
	}
	if t.ForceNoStore && p.api != OpenAIEmbeddings && (t.Kind == KindOpenAI || t.Kind == KindAzureOpenAI) {
		if p.api == OpenAIResponses {
			// State kept at the provider: with storage forbidden there is
			// none to continue, and the provider's own 404 would not say why.
			for _, m := range []struct {
				i    int
				name string
			}{{iPrevious, "previous_response_id"}, {iConversation, "conversation"}} {
				if found[m.i] && !isNull(body[spans[m.i].start:spans[m.i].end]) {
					return ProviderRequest{}, badRequest(CodeUnsupportedParameter, m.name,
						"'%s' continues a conversation stored at the provider, and your organization's policy does not let providers store requests (Tollgate sends store: false). Send the earlier turns in 'input' instead.", m.name)
				}
			}
		}
		if found[iStore] {
			edits = append(edits, edit{spans[iStore].start, spans[iStore].end, []byte("false")})
		} else {
			edits = append(edits, insertMember(body, skipSpace(body, 0), end, "store", []byte("false")))
		}
	}
	if t.MaxOutputTokens > 0 && len(limits) > 0 {
		capEdits, err := outputCapEdits(body, skipSpace(body, 0), end, limits, spans[iLimits:], found[iLimits:], limits[0], t.MaxOutputTokens)
		if err != nil {
			return ProviderRequest{}, err
		}
		edits = append(edits, capEdits...)
	}
	return ProviderRequest{
		Method:   "POST",
		Path:     openAIPath(t, p.api),
		Body:     applyEdits(body, edits),
		Response: resp,
	}, nil
}

// outputLimits names the members that limit a request's output, the one
// added when the client set none first: max_output_tokens for Responses;
// for chat, max_completion_tokens (OpenAI's reasoning models refuse
// max_tokens), except on compatible servers, which often know only the older
// max_tokens. Embeddings have none.
func (p openAIPassthrough) outputLimits(t Target) []string {
	switch p.api {
	case OpenAIChat:
		if t.Kind == KindOpenAICompatible {
			return []string{"max_tokens", "max_completion_tokens"}
		}
		return []string{"max_completion_tokens", "max_tokens"}
	case OpenAIResponses:
		return []string{"max_output_tokens"}
	}
	return nil
}

// acceptsDeveloperRole reports whether the provider knows OpenAI's
// "developer" role. OpenAI does; Azure does from api-version
// 2024-12-01-preview (and on its v1 API); compatible servers (vLLM, Groq,
// Ollama...) mostly do not, and a system message means the same to them.
func acceptsDeveloperRole(t Target) bool {
	switch t.Kind {
	case KindOpenAI:
		return true
	case KindAzureOpenAI:
		v := t.APIVersion
		return v == "v1" || v >= "2024-12-01"
	}
	return false
}

// developerToSystem returns the edits that turn every "developer" role in
// the messages array at s into "system", leaving all else as it is.
func developerToSystem(body []byte, s span) []edit {
	var edits []edit
	_ = scanArray(body[:s.end], s.start, func(el span) error {
		if body[el.start] != '{' {
			return nil
		}
		_, _ = scanObject(body[:el.end], el.start, func(m member) error {
			if m.is("role") && string(body[m.start:m.end]) == `"developer"` {
				edits = append(edits, edit{m.start, m.end, []byte(`"system"`)})
			}
			return nil
		})
		return nil
	})
	return edits
}

// openAIPath is the provider path of an OpenAI-family endpoint.
func openAIPath(t Target, api ClientAPI) string {
	suffix := "/chat/completions"
	switch api {
	case OpenAIEmbeddings:
		suffix = "/embeddings"
	case OpenAIResponses:
		suffix = "/responses"
	}
	if t.Kind != KindAzureOpenAI {
		return t.path("/v1" + suffix)
	}
	v := t.APIVersion
	switch {
	case v == "v1", v == "" && api == OpenAIResponses:
		// Azure serves the Responses API (and, with "v1", everything) on
		// its version-less OpenAI-style surface, the deployment in "model".
		return t.path("/openai/v1" + suffix)
	case v == "":
		v = DefaultAzureAPIVersion
	}
	if api == OpenAIResponses {
		return t.path("/openai/responses?api-version=" + url.QueryEscape(v))
	}
	return t.path("/openai/deployments/" + url.PathEscape(t.UpstreamModel) + suffix + "?api-version=" + url.QueryEscape(v))
}

// forceIncludeUsage returns the edit that sets include_usage to true inside
// the stream_options object at s (nil if it is already true), and the
// client's own value.
func forceIncludeUsage(body []byte, s span) (*edit, bool, error) {
	obj := body[:s.end]
	if body[s.start] != '{' {
		return nil, false, badRequest(CodeInvalidType, "stream_options", "Invalid type for 'stream_options': expected an object, got %s.", jsonKind(body[s.start:s.end]))
	}
	var iu span
	var have bool
	end, err := scanObject(obj, s.start, func(m member) error {
		if m.is("include_usage") {
			if have {
				return &duplicateKeyError{name: "stream_options.include_usage"}
			}
			iu, have = span{m.start, m.end}, true
		}
		return nil
	})
	if err != nil {
		return nil, false, scanError(err)
	}
	if !have {
		e := insertMember(body, s.start, end, "include_usage", []byte("true"))
		return &e, false, nil
	}
	switch v := string(body[iu.start:iu.end]); v {
	case "true":
		return nil, true, nil
	case "false", "null":
		return &edit{iu.start, iu.end, []byte("true")}, false, nil
	default:
		return nil, false, badRequest(CodeInvalidType, "stream_options.include_usage", "Invalid type for 'stream_options.include_usage': expected a boolean, got %s.", jsonKind([]byte(v)))
	}
}

// checkObject reports a body that is not one valid JSON object.
func checkObject(body []byte) error {
	if json.Valid(body) {
		b := bytes.TrimSpace(body)
		if len(b) > 0 && b[0] == '{' {
			return nil
		}
		return badRequest(CodeInvalidJSON, "", "The request body must be a JSON object, not %s.", jsonKind(b))
	}
	var v json.RawMessage
	return jsonError(json.Unmarshal(body, &v))
}

func checkModel(body []byte, s span, found bool) error {
	if !found || isNull(body[s.start:s.end]) {
		return badRequest(CodeMissingParameter, "model", "You must provide a model parameter.")
	}
	if body[s.start] != '"' || s.end-s.start <= 2 {
		if body[s.start] == '"' {
			return badRequest(CodeMissingParameter, "model", "You must provide a model parameter: 'model' is empty.")
		}
		return badRequest(CodeInvalidType, "model", "Invalid type for 'model': expected a string, got %s.", jsonKind(body[s.start:s.end]))
	}
	return nil
}

func scanError(err error) error {
	var d *duplicateKeyError
	if errors.As(err, &d) {
		return badRequest(CodeInvalidValue, d.name, "The request body has more than one %q member. Send each parameter once.", d.name)
	}
	return badRequest(CodeInvalidJSON, "", "The request body is not a valid JSON object.")
}

// jsonKind names the JSON type of a value, for error messages.
func jsonKind(v []byte) string {
	v = bytes.TrimSpace(v)
	if len(v) == 0 {
		return "nothing"
	}
	switch v[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

func (p openAIPassthrough) response(t Target, o ResponseOptions) handler {
	return &openAIPassthroughHandler{api: p.api, includeUsage: o.IncludeUsage}
}

type openAIPassthroughHandler struct {
	api          ClientAPI
	includeUsage bool
}

func (h *openAIPassthroughHandler) contentType(_ bool, upstream string) string { return upstream }
func (h *openAIPassthroughHandler) forwardsBody() bool                         { return true }

func (h *openAIPassthroughHandler) body(dst, b []byte, m *usageMeter) ([]byte, error) {
	spans, found, _, err := topLevel(b, "usage", "choices", "output")
	if err != nil {
		// The driver ignores this error: the body already went to the client
		// as it came, and its usage stays an estimate.
		return dst, err
	}
	if found[0] && !isNull(b[spans[0].start:spans[0].end]) {
		if h.api == OpenAIResponses {
			var u responsesUsage
			if decodeUsage(b, spans[0], &u) {
				m.report(u.usage(), true)
			}
			return dst, nil
		}
		var u openAIUsage
		if decodeUsage(b, spans[0], &u) {
			m.report(u.usage(), true)
		}
		return dst, nil
	}
	// No usage (some compatible servers omit it): estimate from the text.
	switch {
	case h.api == OpenAIChat && found[1]:
		m.addChatChoices(b, spans[1])
	case h.api == OpenAIResponses && found[2]:
		m.addResponsesOutput(b, spans[2])
	}
	return dst, nil
}

func (h *openAIPassthroughHandler) event(dst []byte, ev *SSEEvent, m *usageMeter) ([]byte, error) {
	if !ev.HasData || len(ev.Data) == 0 || ev.Data[0] != '{' {
		// Comments, keep-alives and "data: [DONE]".
		return append(dst, ev.Raw...), nil
	}
	if h.api == OpenAIResponses {
		return h.responsesEvent(dst, ev, m)
	}
	var usage, choices, errSpan, groq span
	var haveUsage, haveChoices, haveError, haveGroq bool
	_, err := scanObject(ev.Data, 0, func(mb member) error {
		switch {
		case mb.is("usage"):
			usage, haveUsage = span{mb.start, mb.end}, true
		case mb.is("choices"):
			choices, haveChoices = span{mb.start, mb.end}, true
		case mb.is("error"):
			errSpan, haveError = span{mb.start, mb.end}, true
		case mb.is("x_groq"):
			groq, haveGroq = span{mb.start, mb.end}, true
		}
		return nil
	})
	if err != nil {
		// Not ours to judge: the client gets what the provider sent, and
		// the stream goes on (an error would end it); only the usage this
		// event may have carried becomes an estimate. Anthropic passthrough
		// does the same.
		return append(dst, ev.Raw...), nil //nolint:nilerr // an unreadable event is forwarded, not an error (TestOpenAIPassthroughUnreadable)
	}
	if haveError && !isNull(ev.Data[errSpan.start:errSpan.end]) {
		pe := parseProviderError(ev.Data)
		return append(dst, ev.Raw...), &StreamError{Type: pe.typ, Message: pe.message}
	}
	emptyChoices := !haveChoices || isEmptyArray(ev.Data[choices.start:choices.end])
	if !emptyChoices {
		m.addChatChoices(ev.Data, choices)
	}
	if haveUsage && !isNull(ev.Data[usage.start:usage.end]) {
		var u openAIUsage
		if decodeUsage(ev.Data, usage, &u) {
			m.report(u.usage(), true)
		}
		if emptyChoices && !h.includeUsage {
			return dst, nil
		}
	} else if haveGroq && !m.final {
		// Groq has reported usage in x_groq.usage on its last chunk.
		var g struct {
			Usage *openAIUsage `json:"usage"`
		}
		if json.Unmarshal(ev.Data[groq.start:groq.end], &g) == nil && g.Usage != nil {
			m.report(g.Usage.usage(), true)
		}
	}
	return append(dst, ev.Raw...), nil
}

// responsesEvent reads usage from the Responses API's terminal events
// (response.completed, response.incomplete, response.failed), whose
// "response" object carries it.
func (h *openAIPassthroughHandler) responsesEvent(dst []byte, ev *SSEEvent, m *usageMeter) ([]byte, error) {
	name := string(ev.Name)
	if name == "" {
		var t struct {
			Type string `json:"type"`
		}
		if json.Unmarshal(ev.Data, &t) == nil {
			name = t.Type
		}
	}
	switch name {
	case "response.output_text.delta", "response.refusal.delta", "response.function_call_arguments.delta",
		"response.reasoning_summary_text.delta", "response.reasoning_text.delta":
		m.addOutputMember(ev.Data, span{0, len(ev.Data)}, "delta")
	case "response.completed", "response.incomplete", "response.failed":
		var e struct {
			Response struct {
				Usage *responsesUsage `json:"usage"`
			} `json:"response"`
		}
		if json.Unmarshal(ev.Data, &e) == nil && e.Response.Usage != nil {
			m.report(e.Response.Usage.usage(), true)
		}
	case "error":
		var e struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		}
		_ = json.Unmarshal(ev.Data, &e)
		return append(dst, ev.Raw...), &StreamError{Type: e.Code, Message: e.Message}
	}
	return append(dst, ev.Raw...), nil
}

func (h *openAIPassthroughHandler) end(dst []byte, _ *usageMeter) ([]byte, error) {
	return dst, nil
}

func isEmptyArray(v []byte) bool {
	if len(v) < 2 || v[0] != '[' {
		return false
	}
	return len(bytes.TrimSpace(v[1:len(v)-1])) == 0
}
