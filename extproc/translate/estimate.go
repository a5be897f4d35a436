package translate

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/tollgate-dev/tollgate/extproc/tokencount"
)

// Token estimates, for usage a provider did not report (usageMeter decides
// when): the input from the client's request, the output from the text the
// response translators pass on. Both count with the tokenizer of
// extproc/tokencount; docs/translation.md lists what is counted.

// The overheads of OpenAI's chat format, as OpenAI counts them for GPT-4o and
// GPT-4 (cookbook "How to count tokens with tiktoken",
// num_tokens_from_messages, checked there against the API's prompt_tokens):
// each message is wrapped in <|start|>{role/name}\n{content}<|end|>\n, a
// name costs one token more, and the reply is primed with
// <|start|>assistant<|message|>. Anthropic and Gemini document no such
// figures; the same ones are used for every client API.
const (
	tokensPerMessage = 3
	tokensPerName    = 1
	tokensPerReply   = 3
)

// The tool definition overheads of the same cookbook (num_tokens_for_tools,
// checked against the API for GPT-4o and GPT-4): per function, per property
// list, per property, per enum list (negative: the enum replaces some
// structure), per enum item, and once after the functions.
const (
	toolFuncInitO200k = 7
	toolFuncInitCl100 = 10
	toolPropInit      = 3
	toolPropKey       = 3
	toolEnumInit      = -3
	toolEnumItem      = 3
	toolFuncEnd       = 12
)

// Images count as a fixed estimate: Tollgate does not decode them to learn
// their size. OpenAI's vision guide (platform.openai.com/docs/guides/images-vision,
// "Calculating costs", GPT-4o) charges 85 tokens for detail "low", and for
// "high" or "auto" 85 plus 170 per 512-px tile of the image scaled to fit
// 2048×2048 and then to 768 px on its short side: a 1024×1024 image is 4
// tiles, 765 tokens, the figure used here. Audio and files (PDFs), whose
// cost depends on their length, count as one image: a floor, not an
// estimate.
const (
	imageTokensLow = 85
	imageTokens    = 765
)

// maxCountedInput bounds the request text the tokenizer reads for one
// estimate: about 2.5 ms of CPU at tiktoken-go's speed, where a prompt of a
// million tokens would take more than half a second. A request with more
// text is sampled (inputCounter.total).
const (
	maxCountedInput = 16 << 10
	inputSamples    = 16
)

// requestText is the client's request, kept by ResponseOptions so that its
// tokens are counted only if an estimate is needed.
type requestText struct {
	api  ClientAPI
	body []byte
}

// countInput estimates the input tokens of a client's request: the text of
// its messages, their overheads, tool definitions, and images at a fixed
// cost. A body that cannot be read counts one token per four bytes.
func countInput(enc tokencount.Encoding, r requestText) int64 {
	if len(r.body) == 0 {
		return 0
	}
	c := inputCounter{enc: enc}
	var ok bool
	switch r.api {
	case OpenAIChat:
		ok = c.chat(r.body)
	case OpenAIEmbeddings:
		ok = c.embeddings(r.body)
	case OpenAIResponses:
		ok = c.responses(r.body)
	case AnthropicMessages:
		ok = c.anthropic(r.body)
	}
	if !ok {
		return int64(len(r.body)+3) / 4
	}
	return c.total()
}

// inputCounter sums the tokens of a request's parts. Text is collected
// first and counted by total, which needs its size to choose how.
type inputCounter struct {
	enc   tokencount.Encoding
	texts []string
	bytes int64 // of texts
	fixed int64 // overheads and images
}

func (c *inputCounter) text(s string) {
	if s != "" {
		c.texts = append(c.texts, s)
		c.bytes += int64(len(s))
	}
}

// raw counts a JSON value's text as written (tool call inputs, schemas).
func (c *inputCounter) raw(v json.RawMessage) {
	if v = bytes.TrimSpace(v); len(v) > 0 && string(v) != "null" {
		c.text(string(v))
	}
}

func (c *inputCounter) total() int64 {
	n := c.fixed
	if c.bytes <= maxCountedInput {
		for _, s := range c.texts {
			n += c.enc.Count(s)
		}
		return n
	}
	// Sample inputSamples bytes evenly spread over the texts, as if they
	// were one, and take the token density (tokens a byte) of the text
	// around each: the whole text if it is short, else a window of it. The
	// mean density times the size is an unbiased estimate of the count.
	const window = maxCountedInput / inputSamples
	stride := c.bytes / inputSamples
	var density float64
	var base int64 // offset of texts[i] in the whole
	i := 0
	for k := range int64(inputSamples) {
		pos := k*stride + stride/2
		for pos >= base+int64(len(c.texts[i])) {
			base += int64(len(c.texts[i]))
			i++
		}
		sample := c.texts[i]
		if len(sample) > window {
			sample = windowAt(sample, int(pos-base), window)
		}
		density += float64(c.enc.Count(sample)) / float64(len(sample))
	}
	return n + int64(math.Ceil(float64(c.bytes)*density/inputSamples))
}

// windowAt returns about n bytes of t (longer than n) from near off, cut
// where the tokenizer's pre-tokenizer cuts anyway (before a space that
// follows a printable ASCII character) when there is such a place close by,
// else at a character boundary.
func windowAt(t string, off, n int) string {
	const near = 64
	start := min(off, len(t)-n)
	if j := cutNear(t, start, min(start+near, len(t)-1)); j >= 0 {
		start = j
	}
	for start > 0 && !utf8.RuneStart(t[start]) {
		start--
	}
	end := start + n
	if end >= len(t) {
		return t[start:]
	}
	if j := cutNear(t, max(end-near, start+1), end); j >= 0 {
		end = j
	}
	for end > start+1 && !utf8.RuneStart(t[end]) {
		end--
	}
	return t[start:end]
}

// cutNear returns the first j in [from, to] before which the pre-tokenizer
// always cuts, or -1.
func cutNear(t string, from, to int) int {
	for j := max(from, 1); j <= to && j < len(t); j++ {
		if t[j] == ' ' && t[j-1] > ' ' && t[j-1] < 0x7f {
			return j
		}
	}
	return -1
}

func (c *inputCounter) image(detail string) {
	if detail == "low" {
		c.fixed += imageTokensLow
	} else {
		c.fixed += imageTokens
	}
}

// chatInput is the part of a Chat Completions request that is counted.
type chatInput struct {
	Messages []chatMessage `json:"messages"`
	Tools    []chatTool    `json:"tools"`
}

func (c *inputCounter) chat(body []byte) bool {
	var r chatInput
	if json.Unmarshal(body, &r) != nil {
		return false
	}
	for i := range r.Messages {
		m := &r.Messages[i]
		c.fixed += tokensPerMessage
		c.text(m.Role)
		if m.Name != "" {
			c.text(m.Name)
			c.fixed += tokensPerName
		}
		c.chatContent(&m.Content)
		if m.Refusal != nil {
			c.text(*m.Refusal)
		}
		for _, tc := range m.ToolCalls {
			c.text(tc.Function.Name)
			c.text(tc.Function.Arguments)
		}
	}
	c.fixed += tokensPerReply
	var tools []toolDef
	for _, t := range r.Tools {
		if t.Function != nil {
			tools = append(tools, toolDef{t.Function.Name, t.Function.Description, t.Function.Parameters})
		}
	}
	c.tools(tools)
	return true
}

func (c *inputCounter) chatContent(ct *chatContent) {
	if !ct.IsArr {
		c.text(ct.Text)
		return
	}
	for _, p := range ct.Parts {
		switch p.Type {
		case "text":
			c.text(p.Text)
		case "refusal":
			c.text(p.Refusal)
		case "image_url":
			detail := ""
			if p.ImageURL != nil {
				detail = p.ImageURL.Detail
			}
			c.image(detail)
		case "input_audio", "file":
			c.image("")
		}
	}
}

// toolDef is a function tool of any client API.
type toolDef struct {
	name, description string
	parameters        json.RawMessage
}

// tools counts function definitions as OpenAI's cookbook does
// (num_tokens_for_tools): "name:description" and "key:type:description" per
// top-level property, enum values, and fixed overheads. Nested schemas
// (items, properties of a property), which the cookbook leaves out, count as
// their JSON text.
func (c *inputCounter) tools(defs []toolDef) {
	if len(defs) == 0 {
		return
	}
	funcInit := int64(toolFuncInitO200k)
	if c.enc == tokencount.Cl100kBase {
		funcInit = toolFuncInitCl100
	}
	for _, d := range defs {
		c.fixed += funcInit
		c.text(d.name + ":" + strings.TrimSuffix(d.description, "."))
		var schema struct {
			Properties map[string]struct {
				Type        json.RawMessage   `json:"type"`
				Description string            `json:"description"`
				Enum        []json.RawMessage `json:"enum"`
				Items       json.RawMessage   `json:"items"`
				Properties  json.RawMessage   `json:"properties"`
			} `json:"properties"`
		}
		if json.Unmarshal(d.parameters, &schema) != nil {
			c.raw(d.parameters)
			continue
		}
		if len(schema.Properties) > 0 {
			c.fixed += toolPropInit
		}
		for key, p := range schema.Properties {
			c.fixed += toolPropKey
			if len(p.Enum) > 0 {
				c.fixed += toolEnumInit
				for _, item := range p.Enum {
					c.fixed += toolEnumItem
					c.text(jsonText(item))
				}
			}
			c.text(key + ":" + jsonText(p.Type) + ":" + strings.TrimSuffix(p.Description, "."))
			c.raw(p.Items)
			c.raw(p.Properties)
		}
	}
	c.fixed += toolFuncEnd
}

// jsonText returns a JSON string's value, or any other value as written.
func jsonText(v json.RawMessage) string {
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s
	}
	return string(bytes.TrimSpace(v))
}

func (c *inputCounter) embeddings(body []byte) bool {
	var r struct {
		Input json.RawMessage `json:"input"`
	}
	if json.Unmarshal(body, &r) != nil {
		return false
	}
	in := bytes.TrimSpace(r.Input)
	switch {
	case len(in) == 0:
		return true
	case in[0] == '"':
		var s string
		if json.Unmarshal(in, &s) != nil {
			return false
		}
		c.text(s)
		return true
	}
	// An array of strings, of token ids, or of arrays of token ids: ids are
	// tokens already.
	var items []json.RawMessage
	if json.Unmarshal(in, &items) != nil {
		return false
	}
	for _, it := range items {
		it = bytes.TrimSpace(it)
		switch {
		case len(it) == 0:
		case it[0] == '"':
			var s string
			if json.Unmarshal(it, &s) != nil {
				return false
			}
			c.text(s)
		case it[0] == '[':
			var ids []json.RawMessage
			if json.Unmarshal(it, &ids) != nil {
				return false
			}
			c.fixed += int64(len(ids))
		default:
			c.fixed++
		}
	}
	return true
}

// responsesItem is one item of a Responses API input: a message, a function
// call or a function call's output (other items are not counted).
type responsesItem struct {
	Type      string          `json:"type"`
	Role      string          `json:"role"`
	Content   json.RawMessage `json:"content"`
	Name      string          `json:"name"`
	Arguments string          `json:"arguments"`
	Output    json.RawMessage `json:"output"`
}

type responsesPart struct {
	Type    string `json:"type"`
	Text    string `json:"text"`
	Refusal string `json:"refusal"`
	Detail  string `json:"detail"`
}

func (c *inputCounter) responses(body []byte) bool {
	var r struct {
		Instructions json.RawMessage `json:"instructions"`
		Input        json.RawMessage `json:"input"`
		Tools        []struct {
			Type        string          `json:"type"`
			Name        string          `json:"name"`
			Description string          `json:"description"`
			Parameters  json.RawMessage `json:"parameters"`
		} `json:"tools"`
	}
	if json.Unmarshal(body, &r) != nil {
		return false
	}
	if s := jsonText(r.Instructions); s != "" && s != "null" {
		c.fixed += tokensPerMessage
		c.text("developer")
		c.text(s)
	}
	in := bytes.TrimSpace(r.Input)
	if len(in) > 0 && in[0] == '"' {
		c.fixed += tokensPerMessage
		c.text("user")
		c.text(jsonText(in))
	} else if len(in) > 0 && in[0] == '[' {
		var items []responsesItem
		if json.Unmarshal(in, &items) != nil {
			return false
		}
		for i := range items {
			c.responsesItem(&items[i])
		}
	}
	c.fixed += tokensPerReply
	var tools []toolDef
	for _, t := range r.Tools {
		if t.Type == "function" {
			tools = append(tools, toolDef{t.Name, t.Description, t.Parameters})
		}
	}
	c.tools(tools)
	return true
}

func (c *inputCounter) responsesItem(it *responsesItem) {
	switch it.Type {
	case "", "message":
		c.fixed += tokensPerMessage
		c.text(it.Role)
		c.responsesContent(it.Content)
	case "function_call":
		c.text(it.Name)
		c.text(it.Arguments)
	case "function_call_output":
		c.responsesContent(it.Output)
	}
}

// responsesContent counts a string, or an array of input and output parts.
func (c *inputCounter) responsesContent(v json.RawMessage) {
	v = bytes.TrimSpace(v)
	if len(v) == 0 {
		return
	}
	if v[0] == '"' {
		c.text(jsonText(v))
		return
	}
	var parts []responsesPart
	if json.Unmarshal(v, &parts) != nil {
		c.raw(v)
		return
	}
	for _, p := range parts {
		switch p.Type {
		case "input_text", "output_text":
			c.text(p.Text)
		case "refusal":
			c.text(p.Refusal)
		case "input_image":
			c.image(p.Detail)
		case "input_file", "input_audio":
			c.image("")
		}
	}
}

func (c *inputCounter) anthropic(body []byte) bool {
	var r struct {
		System   *anthropicContent `json:"system"`
		Messages []struct {
			Role    string           `json:"role"`
			Content anthropicContent `json:"content"`
		} `json:"messages"`
		Tools []anthropicTool `json:"tools"`
	}
	if json.Unmarshal(body, &r) != nil {
		return false
	}
	if r.System != nil && len(*r.System) > 0 {
		c.fixed += tokensPerMessage
		c.text("system")
		c.anthropicBlocks(*r.System)
	}
	for _, m := range r.Messages {
		c.fixed += tokensPerMessage
		c.text(m.Role)
		c.anthropicBlocks(m.Content)
	}
	c.fixed += tokensPerReply
	var tools []toolDef
	for _, t := range r.Tools {
		if t.Type == "" || t.Type == "custom" {
			tools = append(tools, toolDef{t.Name, t.Description, t.InputSchema})
		}
	}
	c.tools(tools)
	return true
}

// anthropicBlocks counts text, tool calls and results, and images and
// documents at a fixed cost. Thinking blocks of earlier turns are not
// counted: Anthropic drops them from the context.
func (c *inputCounter) anthropicBlocks(blocks anthropicContent) {
	for i := range blocks {
		b := &blocks[i]
		switch b.Type {
		case "text":
			c.text(b.Text)
		case "image":
			c.image("")
		case "document":
			if b.Source != nil && b.Source.Type == "text" {
				c.text(b.Source.Data)
			} else {
				c.image("")
			}
		case "tool_use":
			c.text(b.Name)
			c.raw(b.Input)
		case "tool_result":
			if b.Content != nil {
				c.anthropicBlocks(*b.Content)
			}
		}
	}
}

// maxPendingOutput bounds the generated text held back before it is
// tokenized: memory per response stays under it, whatever the length of
// the stream.
const maxPendingOutput = 4 << 10

// outputCounter counts generated text in batches. Text is held back until
// the batch would pass maxPendingOutput or the count is read; a batch is
// then tokenized at once. A response whose provider reports its usage before
// the count is read is never tokenized at all (usageMeter drops the batch).
type outputCounter struct {
	tokens  int64  // tokens of the batches counted
	pending []byte // text not counted yet
	scratch []byte // a JSON string being unescaped
}

func (c *outputCounter) add(enc tokencount.Encoding, s string) {
	if len(c.pending)+len(s) > maxPendingOutput {
		c.flush(enc)
	}
	if len(s) > maxPendingOutput {
		// Already in memory, as the event it came in: counted on its own.
		c.tokens += enc.Count(s)
		return
	}
	c.reserve(len(s))
	c.pending = append(c.pending, s...)
}

func (c *outputCounter) addBytes(enc tokencount.Encoding, b []byte) {
	if len(c.pending)+len(b) > maxPendingOutput {
		c.flush(enc)
	}
	if len(b) > maxPendingOutput {
		c.tokens += enc.Count(string(b))
		return
	}
	c.reserve(len(b))
	c.pending = append(c.pending, b...)
}

// reserve makes room for n more bytes, growing the buffer (by doubling, from
// 256 bytes) no further than maxPendingOutput.
func (c *outputCounter) reserve(n int) {
	need := len(c.pending) + n
	if need <= cap(c.pending) {
		return
	}
	p := make([]byte, len(c.pending), min(max(2*cap(c.pending), need, 256), maxPendingOutput))
	copy(p, c.pending)
	c.pending = p
}

func (c *outputCounter) flush(enc tokencount.Encoding) {
	if len(c.pending) > 0 {
		c.tokens += enc.Count(string(c.pending))
		c.pending = c.pending[:0]
	}
}

// count tokenizes the held-back text and returns the tokens of all text
// added so far.
func (c *outputCounter) count(enc tokencount.Encoding) int64 {
	c.flush(enc)
	return c.tokens
}

// drop forgets the held-back text, once it need not be counted.
func (c *outputCounter) drop() { c.pending = nil }

// The readers below find generated text in provider JSON without decoding
// it, for the passthrough translators, which forward events unchanged and
// must stay cheap per event. Values of unexpected types are ignored.

// addOutputString adds the JSON string at b[s.start:s.end] to the output.
func (m *usageMeter) addOutputString(b []byte, s span) {
	if m.final || s.end-s.start < 2 || b[s.start] != '"' {
		return
	}
	raw := b[s.start+1 : s.end-1]
	if bytes.IndexByte(raw, '\\') < 0 {
		m.out.addBytes(m.enc, raw)
		return
	}
	var ok bool
	if m.out.scratch, ok = appendUnescaped(m.out.scratch[:0], raw); ok {
		m.out.addBytes(m.enc, m.out.scratch)
	}
}

// appendUnescaped appends the value of a JSON string, given without its
// quotes, to dst, as encoding/json decodes it (a lone surrogate becomes
// U+FFFD), without allocating; ok is false for an invalid escape.
func appendUnescaped(dst, raw []byte) (_ []byte, ok bool) {
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c != '\\' {
			dst = append(dst, c)
			continue
		}
		if i++; i == len(raw) {
			return dst, false
		}
		switch raw[i] {
		case '"', '\\', '/':
			dst = append(dst, raw[i])
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, ok := hex4(raw[i+1:])
			if !ok {
				return dst, false
			}
			i += 4
			if utf16.IsSurrogate(r) {
				// A pair is two escapes; a surrogate without its other half
				// is U+FFFD, and what follows is read on its own.
				r2, ok := rune(0), false
				if i+6 < len(raw) && raw[i+1] == '\\' && raw[i+2] == 'u' {
					r2, ok = hex4(raw[i+3:])
				}
				if d := utf16.DecodeRune(r, r2); ok && d != utf8.RuneError {
					r = d
					i += 6
				} else {
					r = utf8.RuneError
				}
			}
			dst = utf8.AppendRune(dst, r)
		default:
			return dst, false
		}
	}
	return dst, true
}

// hex4 reads the four hex digits at the start of b.
func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// addOutputMember adds the string value of member name of the object at
// b[s.start:s.end].
func (m *usageMeter) addOutputMember(b []byte, s span, names ...string) {
	_, _ = scanObject(b[:s.end], s.start, func(f member) error {
		for _, n := range names {
			if f.is(n) {
				m.addOutputString(b, span{f.start, f.end})
			}
		}
		return nil
	})
}

// addChatChoices adds the text of the choices array of a chat completion or
// chat.completion.chunk at b[s.start:s.end]: content, refusal, reasoning
// (reasoning_content, reasoning: what compatible servers stream) and tool
// call arguments of each message or delta.
func (m *usageMeter) addChatChoices(b []byte, s span) {
	if m.final {
		return
	}
	_ = scanArray(b[:s.end], s.start, func(el span) error {
		_, _ = scanObject(b[:el.end], el.start, func(c member) error {
			if c.is("delta") || c.is("message") {
				m.addChatMessage(b, span{c.start, c.end})
			}
			return nil
		})
		return nil
	})
}

func (m *usageMeter) addChatMessage(b []byte, s span) {
	_, _ = scanObject(b[:s.end], s.start, func(f member) error {
		switch {
		case f.is("content"), f.is("refusal"), f.is("reasoning_content"), f.is("reasoning"):
			m.addOutputString(b, span{f.start, f.end})
		case f.is("tool_calls"):
			_ = scanArray(b[:f.end], f.start, func(tc span) error {
				_, _ = scanObject(b[:tc.end], tc.start, func(t member) error {
					if t.is("function") {
						m.addOutputMember(b, span{t.start, t.end}, "arguments")
					}
					return nil
				})
				return nil
			})
		}
		return nil
	})
}

// addResponsesOutput adds the text of a Responses API "output" array:
// message text and refusals, function call arguments, reasoning summaries.
func (m *usageMeter) addResponsesOutput(b []byte, s span) {
	if m.final {
		return
	}
	_ = scanArray(b[:s.end], s.start, func(item span) error {
		_, _ = scanObject(b[:item.end], item.start, func(f member) error {
			switch {
			case f.is("arguments"):
				m.addOutputString(b, span{f.start, f.end})
			case f.is("content"), f.is("summary"):
				_ = scanArray(b[:f.end], f.start, func(p span) error {
					m.addOutputMember(b, p, "text", "refusal")
					return nil
				})
			}
			return nil
		})
		return nil
	})
}

// addAnthropicContent adds the text of an Anthropic "content" array of a
// non-stream message: text, thinking, and tool inputs as written.
func (m *usageMeter) addAnthropicContent(b []byte, s span) {
	if m.final {
		return
	}
	_ = scanArray(b[:s.end], s.start, func(blk span) error {
		_, _ = scanObject(b[:blk.end], blk.start, func(f member) error {
			switch {
			case f.is("text"), f.is("thinking"):
				m.addOutputString(b, span{f.start, f.end})
			case f.is("input"):
				m.out.addBytes(m.enc, b[f.start:f.end])
			}
			return nil
		})
		return nil
	})
}

// addAnthropicDelta adds the text of a content_block_delta event: text,
// thinking, and tool input JSON as it streams.
func (m *usageMeter) addAnthropicDelta(data []byte) {
	_, _ = scanObject(data, 0, func(f member) error {
		if f.is("delta") {
			m.addOutputMember(data, span{f.start, f.end}, "text", "partial_json", "thinking")
		}
		return nil
	})
}
