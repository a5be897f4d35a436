package translate

import (
	"bytes"
	"encoding/json"
	"net/url"
	"path"
	"strconv"
	"strings"
)

// openAIToGemini serves OpenAI Chat Completions clients from Gemini's
// generateContent and streamGenerateContent (SSE) methods.
// docs/translation.md has the field-by-field table.
type openAIToGemini struct{}

type geminiRequest struct {
	Contents          []geminiContent         `json:"contents"`
	SystemInstruction *geminiContent          `json:"systemInstruction,omitempty"`
	Tools             []geminiTool            `json:"tools,omitempty"`
	ToolConfig        *geminiToolConfig       `json:"toolConfig,omitempty"`
	GenerationConfig  *geminiGenerationConfig `json:"generationConfig,omitempty"`
}

type geminiContent struct {
	Role  string       `json:"role,omitempty"`
	Parts []geminiPart `json:"parts"`
}

type geminiPart struct {
	Text             string                  `json:"text,omitempty"`
	Thought          bool                    `json:"thought,omitempty"`
	ThoughtSignature string                  `json:"thoughtSignature,omitempty"`
	InlineData       *geminiBlob             `json:"inlineData,omitempty"`
	FileData         *geminiFileData         `json:"fileData,omitempty"`
	FunctionCall     *geminiFunctionCall     `json:"functionCall,omitempty"`
	FunctionResponse *geminiFunctionResponse `json:"functionResponse,omitempty"`
}

type geminiBlob struct {
	MimeType string `json:"mimeType"`
	Data     string `json:"data"`
}

type geminiFileData struct {
	MimeType string `json:"mimeType,omitempty"`
	FileURI  string `json:"fileUri"`
}

type geminiFunctionCall struct {
	ID   string          `json:"id,omitempty"`
	Name string          `json:"name"`
	Args json.RawMessage `json:"args,omitempty"`
}

type geminiFunctionResponse struct {
	Name     string          `json:"name"`
	Response json.RawMessage `json:"response"`
}

type geminiTool struct {
	FunctionDeclarations []geminiFunctionDecl `json:"functionDeclarations"`
}

// geminiFunctionDecl uses parametersJsonSchema rather than parameters: the
// latter takes only an OpenAPI subset and refuses what OpenAI schemas often
// hold (additionalProperties, $ref, anyOf with null), the former takes JSON
// Schema as OpenAI clients write it.
type geminiFunctionDecl struct {
	Name                 string          `json:"name"`
	Description          string          `json:"description,omitempty"`
	ParametersJSONSchema json.RawMessage `json:"parametersJsonSchema,omitempty"`
}

type geminiToolConfig struct {
	FunctionCallingConfig geminiFunctionCallingConfig `json:"functionCallingConfig"`
}

type geminiFunctionCallingConfig struct {
	Mode                 string   `json:"mode"` // AUTO, ANY, NONE
	AllowedFunctionNames []string `json:"allowedFunctionNames,omitempty"`
}

type geminiGenerationConfig struct {
	StopSequences      []string              `json:"stopSequences,omitempty"`
	ResponseMimeType   string                `json:"responseMimeType,omitempty"`
	ResponseJSONSchema json.RawMessage       `json:"responseJsonSchema,omitempty"`
	CandidateCount     *int64                `json:"candidateCount,omitempty"`
	MaxOutputTokens    *int64                `json:"maxOutputTokens,omitempty"`
	Temperature        *float64              `json:"temperature,omitempty"`
	TopP               *float64              `json:"topP,omitempty"`
	Seed               *int64                `json:"seed,omitempty"`
	PresencePenalty    *float64              `json:"presencePenalty,omitempty"`
	FrequencyPenalty   *float64              `json:"frequencyPenalty,omitempty"`
	ThinkingConfig     *geminiThinkingConfig `json:"thinkingConfig,omitempty"`
}

func (c *geminiGenerationConfig) empty() bool {
	return len(c.StopSequences) == 0 && c.ResponseMimeType == "" && len(c.ResponseJSONSchema) == 0 &&
		c.CandidateCount == nil && c.MaxOutputTokens == nil && c.Temperature == nil && c.TopP == nil &&
		c.Seed == nil && c.PresencePenalty == nil && c.FrequencyPenalty == nil && c.ThinkingConfig == nil
}

type geminiThinkingConfig struct {
	ThinkingBudget  *int64 `json:"thinkingBudget,omitempty"`
	IncludeThoughts bool   `json:"includeThoughts,omitempty"`
}

// skipThoughtSignature is the value Google documents for function calls in
// a history that did not come from Gemini (or lost its signatures): Gemini 3
// refuses a function call turn without a signature.
const skipThoughtSignature = "skip_thought_signature_validator"

func (openAIToGemini) request(t Target, body []byte) (ProviderRequest, error) {
	r, err := parseChat(body)
	if err != nil {
		return ProviderRequest{}, err
	}
	if r.Logprobs != nil && *r.Logprobs {
		return ProviderRequest{}, badRequest(CodeUnsupportedParameter, "logprobs", "Log probabilities are not translated for this model (served by Gemini): leave 'logprobs' out.")
	}
	if err := checkTextOnlyOutput(r); err != nil {
		return ProviderRequest{}, err
	}
	var gr geminiRequest
	var system []geminiPart
	toolNames := map[string]string{} // tool call id -> function name
	for i := range r.Messages {
		m := &r.Messages[i]
		param := "messages[" + strconv.Itoa(i) + "]"
		var c geminiContent
		switch m.Role {
		case "system", "developer":
			text, _ := m.Content.text()
			if text != "" {
				system = append(system, geminiPart{Text: text})
			}
			continue
		case "user":
			c.Role = "user"
			if c.Parts, err = geminiUserParts(param, &m.Content); err != nil {
				return ProviderRequest{}, err
			}
		case "assistant":
			c.Role = "model"
			for _, b := range textBlocks(&m.Content) {
				c.Parts = append(c.Parts, geminiPart{Text: b.Text})
			}
			for j, tc := range m.ToolCalls {
				args, err := toolArguments(param+".tool_calls["+strconv.Itoa(j)+"].function.arguments", tc.Function.Arguments)
				if err != nil {
					return ProviderRequest{}, err
				}
				toolNames[tc.ID] = tc.Function.Name
				p := geminiPart{FunctionCall: &geminiFunctionCall{Name: tc.Function.Name, Args: args}}
				if tc.ExtraContent != nil && tc.ExtraContent.Google != nil {
					p.ThoughtSignature = tc.ExtraContent.Google.ThoughtSignature
				}
				if j == 0 && p.ThoughtSignature == "" {
					p.ThoughtSignature = skipThoughtSignature
				}
				c.Parts = append(c.Parts, p)
			}
		case "tool":
			// Function responses go back in a user turn and are matched by
			// name (Gemini's own call ids are not needed for that, and
			// ids Tollgate made up would mean nothing to it).
			c.Role = "user"
			name, ok := toolNames[m.ToolCallID]
			if !ok {
				return ProviderRequest{}, badRequest(CodeInvalidValue, param+".tool_call_id", "No assistant tool call with id %q comes before this tool message; Gemini needs the function's name, taken from that call.", m.ToolCallID)
			}
			text, ok := m.Content.text()
			if !ok {
				return ProviderRequest{}, badRequest(CodeUnsupportedContent, param+".content", "A tool message for this model (served by Gemini) may hold only text.")
			}
			c.Parts = []geminiPart{{FunctionResponse: &geminiFunctionResponse{Name: name, Response: functionResponse(text)}}}
		}
		if len(c.Parts) == 0 {
			continue
		}
		if n := len(gr.Contents); n > 0 && gr.Contents[n-1].Role == c.Role {
			gr.Contents[n-1].Parts = append(gr.Contents[n-1].Parts, c.Parts...)
		} else {
			gr.Contents = append(gr.Contents, c)
		}
	}
	if len(gr.Contents) == 0 {
		return ProviderRequest{}, badRequest(CodeMissingParameter, "messages", "The conversation has no user or assistant message with content; Gemini needs at least one.")
	}
	if len(system) > 0 {
		gr.SystemInstruction = &geminiContent{Parts: system}
	}

	if len(r.Tools) > 0 {
		decls := make([]geminiFunctionDecl, 0, len(r.Tools))
		for _, tool := range r.Tools {
			d := geminiFunctionDecl{Name: tool.Function.Name, Description: tool.Function.Description}
			if p := bytes.TrimSpace(tool.Function.Parameters); len(p) > 0 && string(p) != "null" {
				d.ParametersJSONSchema = p
			}
			decls = append(decls, d)
		}
		gr.Tools = []geminiTool{{FunctionDeclarations: decls}}
	}
	tc, err := r.toolChoice()
	if err != nil {
		return ProviderRequest{}, err
	}
	if tc != nil {
		fc := geminiFunctionCallingConfig{}
		switch tc.mode {
		case "none":
			fc.Mode = "NONE"
		case "auto":
			fc.Mode = "AUTO"
		case "required":
			fc.Mode = "ANY"
		case "function":
			fc.Mode, fc.AllowedFunctionNames = "ANY", []string{tc.name}
		}
		gr.ToolConfig = &geminiToolConfig{FunctionCallingConfig: fc}
	}

	gc := geminiGenerationConfig{
		StopSequences:    r.Stop,
		CandidateCount:   r.N,
		Temperature:      r.Temperature,
		TopP:             r.TopP,
		Seed:             r.Seed,
		PresencePenalty:  r.PresencePenalty,
		FrequencyPenalty: r.FrequencyPenalty,
	}
	if n, ok := r.maxOutputTokens(); ok {
		n = t.capOutput(n)
		gc.MaxOutputTokens = &n
	} else if t.MaxOutputTokens > 0 {
		n := t.MaxOutputTokens
		gc.MaxOutputTokens = &n
	}
	if rf := r.ResponseFormat; rf != nil {
		switch rf.Type {
		case "json_object":
			gc.ResponseMimeType = "application/json"
		case "json_schema":
			gc.ResponseMimeType = "application/json"
			gc.ResponseJSONSchema = rf.JSONSchema.Schema
		}
	}
	switch e := r.ReasoningEffort; e {
	case "":
	case "none", "minimal":
		zero := int64(0)
		gc.ThinkingConfig = &geminiThinkingConfig{ThinkingBudget: &zero}
	default:
		budget, ok := reasoningBudget(e)
		if !ok {
			return ProviderRequest{}, badRequest(CodeInvalidValue, "reasoning_effort", "Unknown 'reasoning_effort' %q; use none, minimal, low, medium or high.", e)
		}
		gc.ThinkingConfig = &geminiThinkingConfig{ThinkingBudget: &budget, IncludeThoughts: true}
	}
	if !gc.empty() {
		gr.GenerationConfig = &gc
	}
	out, err := marshal(&gr)
	if err != nil {
		return ProviderRequest{}, err
	}
	method := ":generateContent"
	if r.stream() {
		method = ":streamGenerateContent?alt=sse"
	}
	model := strings.TrimPrefix(t.UpstreamModel, "models/")
	return ProviderRequest{
		Method: "POST",
		Path:   t.path("/v1beta/models/" + url.PathEscape(model) + method),
		Body:   out,
		Response: ResponseOptions{
			Stream:       r.stream(),
			IncludeUsage: r.includeUsage(),
		},
	}, nil
}

// functionResponse wraps a tool's output in the object Gemini's
// functionResponse.response must be: an object output stays as it is, any
// other output goes under "output", the key Gemini documents for it.
func functionResponse(text string) json.RawMessage {
	t := strings.TrimSpace(text)
	if len(t) > 0 && t[0] == '{' && json.Valid([]byte(t)) {
		return json.RawMessage(t)
	}
	b := append([]byte(`{"output":`), appendJSONString(nil, text)...)
	return append(b, '}')
}

func geminiUserParts(param string, c *chatContent) ([]geminiPart, error) {
	if !c.IsArr {
		if c.Text == "" {
			return nil, nil
		}
		return []geminiPart{{Text: c.Text}}, nil
	}
	var out []geminiPart
	for j, p := range c.Parts {
		pp := param + ".content[" + strconv.Itoa(j) + "]"
		switch p.Type {
		case "text":
			if p.Text != "" {
				out = append(out, geminiPart{Text: p.Text})
			}
		case "image_url":
			u := p.ImageURL.URL
			if mt, data, ok := parseDataURL(u); ok {
				out = append(out, geminiPart{InlineData: &geminiBlob{MimeType: mt, Data: data}})
			} else if strings.HasPrefix(u, "https://") || strings.HasPrefix(u, "http://") {
				out = append(out, geminiPart{FileData: &geminiFileData{MimeType: imageTypeFromURL(u), FileURI: u}})
			} else {
				return nil, badRequest(CodeInvalidValue, pp+".image_url.url", "An image URL must be an http(s) URL or a data:image/...;base64,... URL.")
			}
		case "input_audio":
			out = append(out, geminiPart{InlineData: &geminiBlob{MimeType: "audio/" + p.InputAudio.Format, Data: p.InputAudio.Data}})
		case "file":
			if p.File.FileData == "" {
				return nil, badRequest(CodeUnsupportedContent, pp+".file.file_id", "Uploaded files ('file_id') live at OpenAI and cannot reach this model (served by Gemini); send the file inline in 'file_data' as a data: URL.")
			}
			mt, data, ok := parseDataURL(p.File.FileData)
			if !ok {
				return nil, badRequest(CodeInvalidValue, pp+".file.file_data", "'file_data' must be a data: URL with base64 content, e.g. data:application/pdf;base64,....")
			}
			out = append(out, geminiPart{InlineData: &geminiBlob{MimeType: mt, Data: data}})
		}
	}
	return out, nil
}

// imageTypeFromURL guesses an image's media type from its URL, which
// Gemini's fileData needs; JPEG when the extension says nothing.
func imageTypeFromURL(u string) string {
	p := u
	if parsed, err := url.Parse(u); err == nil {
		p = parsed.Path
	}
	switch strings.ToLower(path.Ext(p)) {
	case ".png":
		return "image/png"
	case ".webp":
		return "image/webp"
	case ".gif":
		return "image/gif"
	case ".heic":
		return "image/heic"
	case ".heif":
		return "image/heif"
	}
	return "image/jpeg"
}

type geminiResponse struct {
	Candidates     []geminiCandidate `json:"candidates"`
	PromptFeedback *struct {
		BlockReason        string `json:"blockReason"`
		BlockReasonMessage string `json:"blockReasonMessage"`
	} `json:"promptFeedback"`
	UsageMetadata *geminiUsage `json:"usageMetadata"`
	ModelVersion  string       `json:"modelVersion"`
	ResponseID    string       `json:"responseId"`
	Error         *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Status  string `json:"status"`
	} `json:"error"`
}

type geminiCandidate struct {
	Content      *geminiContent `json:"content"`
	FinishReason string         `json:"finishReason"`
	Index        *int           `json:"index"`
}

// geminiFinishReason maps finishReason to finish_reason.
func geminiFinishReason(reason string, toolCalls bool) string {
	switch reason {
	case "MAX_TOKENS":
		return "length"
	case "SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY", "LANGUAGE":
		return "content_filter"
	}
	// STOP, and the rest (OTHER, MALFORMED_FUNCTION_CALL, ...): Gemini says
	// STOP after function calls, where OpenAI says tool_calls.
	if toolCalls {
		return "tool_calls"
	}
	return "stop"
}

func blockedMessage(reason, message string) string {
	s := "The provider blocked this prompt (" + reason + ")"
	if message != "" {
		s += ": " + message
	}
	return s + "."
}

func (openAIToGemini) response(t Target, o ResponseOptions) handler {
	return &geminiToOpenAIChat{opts: o, model: t.UpstreamModel}
}

// geminiToOpenAIChat translates Gemini responses into Chat Completions.
type geminiToOpenAIChat struct {
	opts  ResponseOptions
	model string

	w          chunkWriter
	started    bool
	id         string
	candidates []candidateState
	usage      *geminiUsage
	finished   bool // every candidate that started has finished, or the prompt was blocked
}

type candidateState struct {
	started  bool
	tools    int
	finished bool
}

// maxCandidates bounds candidate indexes, as maxBlocks does block indexes.
const maxCandidates = 64

func (h *geminiToOpenAIChat) contentType(stream bool, _ string) string {
	if stream {
		return "text/event-stream"
	}
	return "application/json"
}

func (*geminiToOpenAIChat) forwardsBody() bool { return false }

// toolCallID names a function call for OpenAI clients: Gemini's own id when
// it gave one, else one made from the response id.
func (h *geminiToOpenAIChat) toolCallID(fc *geminiFunctionCall, responseID string, candidate, n int) string {
	if fc.ID != "" {
		return fc.ID
	}
	base := responseID
	if base == "" {
		base = h.opts.RequestID
	}
	return "call_" + base + "_" + strconv.Itoa(candidate) + "_" + strconv.Itoa(n)
}

func signatureExtra(sig string) json.RawMessage {
	if sig == "" {
		return nil
	}
	b := append([]byte(`{"google":{"thought_signature":`), appendJSONString(nil, sig)...)
	return append(b, "}}"...)
}

func (h *geminiToOpenAIChat) body(dst, b []byte, m *usageMeter) ([]byte, error) {
	var gr geminiResponse
	if err := json.Unmarshal(b, &gr); err != nil {
		return nil, err
	}
	var u Usage
	if gr.UsageMetadata != nil {
		u = gr.UsageMetadata.usage()
		m.report(u, true)
	}
	model := gr.ModelVersion
	if model == "" {
		model = h.model
	}
	cc := chatCompletion{
		ID:      responseID(gr.ResponseID, h.opts.RequestID),
		Object:  "chat.completion",
		Created: h.opts.Created,
		Model:   model,
		Usage:   appendOpenAIUsage(nil, u),
	}
	for i, cand := range gr.Candidates {
		idx := i
		if cand.Index != nil {
			idx = *cand.Index
		}
		msg := chatOutMessage{Role: "assistant"}
		var text, reasoning strings.Builder
		hasText := false
		if cand.Content != nil {
			for _, p := range cand.Content.Parts {
				switch {
				case p.FunctionCall != nil:
					msg.ToolCalls = append(msg.ToolCalls, chatOutToolCall{
						ID: h.toolCallID(p.FunctionCall, gr.ResponseID, idx, len(msg.ToolCalls)), Type: "function",
						Function:     chatOutFunction{Name: p.FunctionCall.Name, Arguments: compactArgs(p.FunctionCall.Args)},
						ExtraContent: signatureExtra(p.ThoughtSignature),
					})
				case p.Thought:
					reasoning.WriteString(p.Text)
				default:
					text.WriteString(p.Text)
					hasText = hasText || p.Text != ""
				}
			}
		}
		if hasText {
			s := text.String()
			msg.Content = &s
		}
		msg.ReasoningContent = reasoning.String()
		cc.Choices = append(cc.Choices, chatChoice{Index: idx, Message: msg, Logprobs: jsonNull,
			FinishReason: geminiFinishReason(cand.FinishReason, len(msg.ToolCalls) > 0)})
	}
	if len(cc.Choices) == 0 {
		// A blocked prompt has no candidates: the client gets one empty
		// choice that says why, with finish_reason content_filter.
		reason, detail := "no candidates", ""
		if pf := gr.PromptFeedback; pf != nil && pf.BlockReason != "" {
			reason, detail = pf.BlockReason, pf.BlockReasonMessage
		}
		refusal := blockedMessage(reason, detail)
		cc.Choices = []chatChoice{{Index: 0, Message: chatOutMessage{Role: "assistant", Refusal: &refusal}, Logprobs: jsonNull, FinishReason: "content_filter"}}
	}
	out, err := marshal(&cc)
	return append(dst, out...), err
}

func (h *geminiToOpenAIChat) event(dst []byte, ev *SSEEvent, m *usageMeter) ([]byte, error) {
	if !ev.HasData || len(bytes.TrimSpace(ev.Data)) == 0 {
		return dst, nil
	}
	var gr geminiResponse
	if err := json.Unmarshal(ev.Data, &gr); err != nil {
		if ev.Truncated {
			return dst, nil
		}
		return dst, err
	}
	if !h.started {
		h.started = true
		h.id = gr.ResponseID
		model := gr.ModelVersion
		if model == "" {
			model = h.model
		}
		h.w = newChunkWriter(responseID(gr.ResponseID, h.opts.RequestID), model, h.opts.Created, h.opts.IncludeUsage)
	}
	if gr.Error != nil {
		se := &StreamError{Type: gr.Error.Status, Message: gr.Error.Message}
		return h.w.errorEvent(dst, gr.Error.Code, se.Message, se.Type), se
	}
	if gr.UsageMetadata != nil {
		h.usage = gr.UsageMetadata
		m.report(gr.UsageMetadata.usage(), false)
	}
	for i, cand := range gr.Candidates {
		idx := i
		if cand.Index != nil {
			idx = *cand.Index
		}
		if idx < 0 || idx >= maxCandidates {
			return dst, errBadBlock(idx)
		}
		for len(h.candidates) <= idx {
			h.candidates = append(h.candidates, candidateState{})
		}
		cs := &h.candidates[idx]
		if !cs.started {
			cs.started = true
			dst = h.w.role(dst, idx)
		}
		if cand.Content != nil {
			for _, p := range cand.Content.Parts {
				switch {
				case p.FunctionCall != nil:
					args := compactArgs(p.FunctionCall.Args)
					m.addOutput(args)
					dst = h.w.toolStart(dst, idx, cs.tools, h.toolCallID(p.FunctionCall, h.id, idx, cs.tools), p.FunctionCall.Name, args, signatureExtra(p.ThoughtSignature))
					cs.tools++
				case p.Text == "":
				case p.Thought:
					m.addOutput(p.Text)
					dst = h.w.text(dst, idx, "reasoning_content", p.Text)
				default:
					m.addOutput(p.Text)
					dst = h.w.text(dst, idx, "content", p.Text)
				}
			}
		}
		if cand.FinishReason != "" && !cs.finished {
			cs.finished = true
			dst = h.w.finish(dst, idx, geminiFinishReason(cand.FinishReason, cs.tools > 0))
		}
	}
	if pf := gr.PromptFeedback; pf != nil && pf.BlockReason != "" && len(gr.Candidates) == 0 {
		for len(h.candidates) < 1 {
			h.candidates = append(h.candidates, candidateState{})
		}
		cs := &h.candidates[0]
		if !cs.started {
			cs.started = true
			dst = h.w.role(dst, 0)
		}
		dst = h.w.text(dst, 0, "refusal", blockedMessage(pf.BlockReason, pf.BlockReasonMessage))
		if !cs.finished {
			cs.finished = true
			dst = h.w.finish(dst, 0, "content_filter")
		}
	}
	h.finished = len(h.candidates) > 0
	for _, cs := range h.candidates {
		if cs.started && !cs.finished {
			h.finished = false
		}
	}
	return dst, nil
}

func (h *geminiToOpenAIChat) end(dst []byte, m *usageMeter) ([]byte, error) {
	if !h.finished {
		// Cut short: no usage chunk and no [DONE], so the client can tell.
		return dst, nil
	}
	if h.usage != nil {
		m.report(h.usage.usage(), true)
	}
	if h.opts.IncludeUsage {
		dst = h.w.usage(dst, m.usage())
	}
	return append(dst, sseDone...), nil
}
