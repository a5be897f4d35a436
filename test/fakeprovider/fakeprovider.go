// Package fakeprovider runs fake AI providers — OpenAI, Azure OpenAI,
// Anthropic and Gemini — as HTTP servers on 127.0.0.1, for Tollgate's
// end-to-end tests and for `tollgate dev --fake-providers`. It is test code:
// nothing here is a model, and nothing should face the internet.
//
// Each fake speaks its provider's wire format as the real API does — paths,
// credential header, JSON bodies, SSE framing and event names, usage fields,
// error bodies — so that the gateway in front of it cannot tell the
// difference in anything it parses. Every request is recorded (Requests) so
// that tests can assert what the provider saw: the credential, the upstream
// model name and body, and never a Tollgate key (AssertNoTollgateSecrets).
//
// # Endpoints
//
//   - NewOpenAI: POST /v1/chat/completions, /v1/embeddings, /v1/responses;
//     GET /v1/models, /v1/models/{id}. Credential: Authorization: Bearer.
//   - NewAzureOpenAI: POST /openai/deployments/{deployment}/chat/completions
//     and …/embeddings, with ?api-version= required (without it Azure
//     answers 404 "Resource not found"). Credential: api-key header.
//     Options.Models are the deployment names; replies name the deployment
//     as their model.
//   - NewAnthropic: POST /v1/messages, /v1/messages/count_tokens; GET
//     /v1/models. Credential: x-api-key; the anthropic-version header is
//     required, and so are model, messages and max_tokens.
//   - NewGemini: POST /v1beta/models/{model}:generateContent,
//     :streamGenerateContent (alt=sse for SSE, else a streamed JSON array),
//     :countTokens; GET /v1beta/models (v1 works too). Credential:
//     x-goog-api-key header or ?key=.
//
// A wrong credential gets the provider's own answer: 401 with OpenAI's
// invalid_api_key body, Azure's "Access denied" body, Anthropic's
// authentication_error; Gemini, like the real API, answers 400
// INVALID_ARGUMENT with reason API_KEY_INVALID (403 PERMISSION_DENIED when
// there is no key at all). A model outside Options.Models gets the
// provider's 404.
//
// # Deterministic replies and usage
//
// Token counts are words: Tokens(s) is the number of whitespace-separated
// words in s. For every request:
//
//   - Prompt text is the text of every message, system prompt and
//     instructions included, and of tool results (Gemini: the
//     functionResponse's JSON); tool definitions, images and tool-call
//     arguments do not count. InputTokens = max(1, Tokens(prompt)).
//   - The reply is "fake-<name> reply: " followed by the first 16 words of
//     the last user message, where <name> is Options.Name (default
//     "openai", "azure", "anthropic" or "gemini"; e.g. "fake-openai reply:
//     hello there"); x-fake-text replaces it. A max-tokens limit in the request (max_tokens,
//     max_completion_tokens, max_output_tokens, maxOutputTokens) cuts the
//     reply to that many words and the finish reason becomes the provider's
//     "length" reason.
//   - CachedTokens = x-fake-cached-tokens (default 0, at most InputTokens).
//     CacheWriteTokens = x-fake-cache-write-tokens (Anthropic only, default
//     0, at most InputTokens - CachedTokens).
//   - ReasoningTokens = x-fake-reasoning-tokens when set, else
//     DefaultReasoningTokens (16) when the request asks for reasoning
//     (OpenAI reasoning_effort other than "none", Responses reasoning.effort,
//     Anthropic thinking.type "enabled", Gemini thinkingConfig with a
//     thinkingBudget other than 0), else 0. When the request asks for
//     reasoning, Anthropic also sends that many words of thinking, and
//     Gemini too if includeThoughts is set.
//   - OutputTokens = Tokens(reply) + ReasoningTokens; a tool call counts
//     ToolCallTokens (10) + ReasoningTokens.
//   - Embeddings: InputTokens = the words of every input string (or the
//     length of every token array); vectors have `dimensions` (default 8)
//     unit-length components derived from a hash of the input.
//
// The usage is reported in the provider's own fields (Usage documents the
// mapping), and recorded with the request (Request.Usage) so that a test can
// compare it with what the gateway stored.
//
// # Tool calls
//
// When the request offers tools and its last message is the user's and
// names one of them ("please call get_weather"), the reply is a call of that
// tool, streamed too, in the provider's format. Its arguments are built from
// the tool's JSON schema: each property gets "fake" (string), 1 (number,
// integer), true (boolean), [] (array) or {} (object). After the tool
// result comes back the last message is no longer the user's, so the next
// reply is text.
//
// # Script headers
//
// A request can script its own answer with headers (the gateway forwards
// x-fake-* headers untouched; Go scripting below covers the cases where only
// one upstream should misbehave):
//
//	x-fake-status: 429          answer with this status and the provider's error body
//	x-fake-error: 500           the same as x-fake-status (500, 529, 400, 401, ...)
//	x-fake-retry-after: 3       with a status: Retry-After header (Gemini: RetryInfo in the body, as Google sends it)
//	x-fake-latency: 200ms       wait this long before answering (before any header)
//	x-fake-event-delay: 20ms    wait this long between stream events
//	x-fake-cut-after: 3         close the connection after 3 stream events, before the terminal
//	                            event (non-streaming: after 3 bytes of the body)
//	x-fake-no-usage: 1          leave usage out of the answer, to test estimation
//	x-fake-text: Hello world    reply with exactly this text
//	x-fake-cached-tokens: 4     report 4 cached prompt tokens
//	x-fake-cache-write-tokens: 2  report 2 prompt tokens written to the cache (Anthropic)
//	x-fake-reasoning-tokens: 7  report 7 reasoning tokens
//
// From Go, Server.Enqueue queues Behaviors that the next requests take, one
// each, in order, and Server.Script installs a function that picks a
// Behavior per request when the queue is empty. A Behavior from Go replaces
// whatever the request's headers say.
//
// # Streams
//
// Streams are flushed event by event, with Options.EventDelay (or
// x-fake-event-delay) between events. OpenAI Chat Completions sends a final
// usage chunk only when stream_options.include_usage is true, as the real API
// does; Anthropic reports usage in message_start and message_delta; Gemini in
// every chunk's usageMetadata, complete in the last one; the Responses API in
// response.completed.
//
// # TLS
//
// With Options.TLS a fake serves HTTPS with a certificate for 127.0.0.1, ::1
// and localhost, signed by a CA generated once per process: CACertPEM returns
// it for callers to trust, and Server.Client returns a client that does.
package fakeprovider

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Kind is a provider kind, spelled as Tollgate's store spells it.
type Kind string

// The provider kinds a fake can play.
const (
	OpenAI      Kind = "openai"
	AzureOpenAI Kind = "azure_openai"
	Anthropic   Kind = "anthropic"
	Gemini      Kind = "gemini"
)

const (
	// DefaultReasoningTokens is the reasoning a request that asks for
	// reasoning gets, unless x-fake-reasoning-tokens says otherwise.
	DefaultReasoningTokens = 16
	// ToolCallTokens is the output of a tool call, reasoning excluded.
	ToolCallTokens = 10
	// Created is the creation time every reply reports, so that replies
	// are the same from one run to the next.
	Created = 1767225600 // 2026-01-01T00:00:00Z

	echoWords        = 16
	defaultEmbedDims = 8
	maxBody          = 32 << 20
)

// Options configures a fake provider. The zero value is a working fake.
type Options struct {
	// APIKey is the only credential the fake accepts; "" means
	// DefaultAPIKey(kind).
	APIKey string
	// Models the fake serves (Azure OpenAI: deployment names); nil means
	// DefaultModels(kind). Other models get the provider's 404.
	Models []string
	// Addr is the address to listen on; "" means 127.0.0.1 on a free port.
	Addr string
	// TLS serves HTTPS with a certificate signed by CACertPEM.
	TLS bool
	// EventDelay is the pause between stream events, unless a request's
	// x-fake-event-delay or Behavior says otherwise.
	EventDelay time.Duration
	// Name goes into replies ("fake-<Name> reply: …") so that a client can
	// tell which fake answered; "" means the kind, e.g. "openai".
	Name string
}

// DefaultAPIKey is the credential a fake accepts when Options.APIKey is "".
func DefaultAPIKey(k Kind) string { return "fake-" + strings.ReplaceAll(string(k), "_", "-") + "-key" }

// DefaultModels are the models a fake serves when Options.Models is nil.
func DefaultModels(k Kind) []string {
	switch k {
	case Anthropic:
		return []string{"claude-sonnet-4-5", "claude-haiku-4-5"}
	case Gemini:
		return []string{"gemini-2.5-flash", "gemini-2.5-pro"}
	}
	return []string{"gpt-4o", "gpt-4o-mini", "text-embedding-3-small"}
}

// Tokens is the fake's token count of a text: its number of words.
func Tokens(text string) int { return len(strings.Fields(text)) }

// Usage is what a fake reported for one request, in one convention
// (OpenAI's: the parts are included in the totals). In each provider's
// fields:
//
//   - OpenAI, Azure: prompt_tokens = InputTokens,
//     prompt_tokens_details.cached_tokens = CachedTokens, completion_tokens
//     = OutputTokens, completion_tokens_details.reasoning_tokens =
//     ReasoningTokens, total_tokens = InputTokens + OutputTokens. Responses
//     API: input_tokens, input_tokens_details.cached_tokens, output_tokens,
//     output_tokens_details.reasoning_tokens, total_tokens.
//   - Anthropic: input_tokens = InputTokens - CachedTokens -
//     CacheWriteTokens, cache_read_input_tokens = CachedTokens,
//     cache_creation_input_tokens = CacheWriteTokens, output_tokens =
//     OutputTokens (thinking included).
//   - Gemini: promptTokenCount = InputTokens, cachedContentTokenCount =
//     CachedTokens, candidatesTokenCount = OutputTokens - ReasoningTokens,
//     thoughtsTokenCount = ReasoningTokens, totalTokenCount = InputTokens +
//     OutputTokens. Zero counts are left out, as Google leaves them out.
type Usage struct {
	InputTokens      int
	CachedTokens     int
	CacheWriteTokens int
	OutputTokens     int
	ReasoningTokens  int
}

// Server is one fake provider.
type Server struct {
	kind    Kind
	opts    Options
	dialect dialect
	url     string
	ln      net.Listener
	hs      *http.Server
	client  *http.Client

	mu       sync.Mutex
	requests []*Request
	queue    []Behavior
	script   func(*Request) *Behavior
}

// NewOpenAI starts a fake OpenAI API.
func NewOpenAI(opts Options) (*Server, error) { return start(OpenAI, opts) }

// NewAzureOpenAI starts a fake Azure OpenAI resource.
func NewAzureOpenAI(opts Options) (*Server, error) { return start(AzureOpenAI, opts) }

// NewAnthropic starts a fake Anthropic API.
func NewAnthropic(opts Options) (*Server, error) { return start(Anthropic, opts) }

// NewGemini starts a fake Gemini API (the Gemini Developer API, not Vertex).
func NewGemini(opts Options) (*Server, error) { return start(Gemini, opts) }

// New starts a fake of the given kind.
func New(kind Kind, opts Options) (*Server, error) { return start(kind, opts) }

func start(kind Kind, opts Options) (*Server, error) {
	s := &Server{kind: kind, opts: opts, client: &http.Client{}}
	switch kind {
	case OpenAI:
		s.dialect = openAIDialect{}
	case AzureOpenAI:
		s.dialect = azureDialect{}
	case Anthropic:
		s.dialect = anthropicDialect{}
	case Gemini:
		s.dialect = geminiDialect{}
	default:
		return nil, fmt.Errorf("fakeprovider: unknown provider kind %q", kind)
	}
	if s.opts.APIKey == "" {
		s.opts.APIKey = DefaultAPIKey(kind)
	}
	if s.opts.Models == nil {
		s.opts.Models = DefaultModels(kind)
	}
	if s.opts.Name == "" {
		s.opts.Name = strings.TrimSuffix(string(kind), "_openai")
	}
	addr := s.opts.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("fakeprovider: listen on %s: %w", addr, err)
	}
	s.ln = ln
	s.hs = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		// Clients that hang up mid-stream are part of the tests; their
		// errors are not news.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	scheme := "http"
	if s.opts.TLS {
		cfg, pool, err := serverTLS()
		if err != nil {
			_ = ln.Close()
			return nil, err
		}
		s.hs.TLSConfig = cfg
		s.client = &http.Client{Transport: &http.Transport{
			TLSClientConfig:   clientTLS(pool),
			ForceAttemptHTTP2: true,
		}}
		scheme = "https"
		go func() { _ = s.hs.ServeTLS(ln, "", "") }()
	} else {
		go func() { _ = s.hs.Serve(ln) }()
	}
	s.url = scheme + "://" + ln.Addr().String()
	return s, nil
}

// URL is the server's base URL, e.g. "http://127.0.0.1:41234"; API paths
// (/v1/chat/completions, /openai/deployments/…, /v1beta/models/…) go after it.
func (s *Server) URL() string { return s.url }

// Kind is the provider kind the server plays.
func (s *Server) Kind() Kind { return s.kind }

// APIKey is the credential the server accepts.
func (s *Server) APIKey() string { return s.opts.APIKey }

// Models are the models (Azure OpenAI: deployments) the server serves.
func (s *Server) Models() []string { return append([]string(nil), s.opts.Models...) }

// Client returns an HTTP client for the server: it trusts the test CA when
// the server serves TLS.
func (s *Server) Client() *http.Client { return s.client }

// Close stops the server and drops its connections, streams included.
func (s *Server) Close() error { return s.hs.Close() }

// ServeHTTP answers one request: record it, choose its Behavior, wait the
// scripted latency, check the credential, then either fail as scripted or
// let the provider's dialect answer.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
	if err != nil {
		http.Error(w, "fakeprovider: reading the request body: "+err.Error(), http.StatusBadRequest)
		return
	}
	rec := s.record(r, body)
	c := &call{s: s, w: w, r: r, rec: rec}
	defer func() {
		p := recover()
		s.mu.Lock()
		rec.End = time.Now()
		if p != nil {
			rec.Cut = true
		}
		s.mu.Unlock()
		if p != nil {
			panic(p) // http.ErrAbortHandler: the server drops the connection
		}
	}()

	b, err := s.behavior(rec)
	if err != nil {
		c.b = Behavior{}
		s.dialect.writeError(c, http.StatusBadRequest, "fakeprovider: "+err.Error())
		return
	}
	c.b = b
	if b.Latency > 0 {
		t := time.NewTimer(b.Latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			panic(http.ErrAbortHandler)
		}
	}
	if !s.dialect.authorize(c) {
		return
	}
	if b.Status != 0 {
		s.dialect.writeError(c, b.Status, "")
		return
	}
	s.dialect.serve(c)
}

// dialect is one provider's API.
type dialect interface {
	// authorize checks the request's credential; on a bad one it answers
	// as the provider does and returns false.
	authorize(c *call) bool
	// serve answers a request with a good credential, including its 404s.
	serve(c *call)
	// writeError answers with status and the provider's error body for it;
	// msg "" means the provider's usual message for that status.
	writeError(c *call, status int, msg string)
}

// call is one request being answered.
type call struct {
	s   *Server
	w   http.ResponseWriter
	r   *http.Request
	rec *Request
	b   Behavior
}

// writeJSON answers with a JSON body, or, when the Behavior says to cut,
// with the first CutAfter bytes of it before dropping the connection.
func (c *call) writeJSON(status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("fakeprovider: marshal reply: %v", err)) // the fake's bug, not the client's
	}
	h := c.w.Header()
	h.Set("Content-Type", "application/json")
	c.setStatus(status)
	if n := c.b.CutAfter; n > 0 && n < len(body) {
		c.w.WriteHeader(status)
		_, _ = c.w.Write(body[:n])
		_ = http.NewResponseController(c.w).Flush()
		panic(http.ErrAbortHandler)
	}
	h.Set("Content-Length", fmt.Sprint(len(body)))
	c.w.WriteHeader(status)
	_, _ = c.w.Write(body)
}

func (c *call) setStatus(status int) {
	c.s.mu.Lock()
	c.rec.Status = status
	c.s.mu.Unlock()
}

// decode reads the request body as JSON into v.
func (c *call) decode(v any) error {
	if err := json.Unmarshal(c.rec.Body, v); err != nil {
		return fmt.Errorf("the request body is not valid JSON: %w", err)
	}
	return nil
}

// setUsage records the usage the fake is about to report.
func (c *call) setUsage(u Usage) {
	c.s.mu.Lock()
	c.rec.Usage = u
	c.s.mu.Unlock()
}

// usageSent marks that the usage has reached the wire.
func (c *call) usageSent() {
	c.s.mu.Lock()
	c.rec.UsageReported = true
	c.s.mu.Unlock()
}

// serves says whether model is one the server serves.
func (c *call) serves(model string) bool {
	for _, m := range c.s.opts.Models {
		if m == model {
			return true
		}
	}
	return false
}

// id makes a response id unique within the server and the same from run to
// run: prefix + the request's sequence number.
func (c *call) id(prefix string) string {
	return fmt.Sprintf("%sfake%06d", prefix, c.rec.Seq)
}

// conversation is what the fake needs from a chat request, whatever its API.
type conversation struct {
	model     string
	prompt    []string // every text of the prompt, system prompt included
	lastUser  string   // the last message's text when it is the user's
	tools     []tool
	maxTokens int
	reasoning bool
}

type tool struct {
	name   string
	schema json.RawMessage
}

// answer is the fake's reply to a conversation.
type answer struct {
	text      string   // the reply, when it is not a tool call
	words     []string // text in stream pieces: each word with its leading space
	thinking  string   // ReasoningTokens words of thinking, for APIs that show it
	call      *toolCall
	truncated bool // cut at the request's max tokens
	usage     Usage
}

type toolCall struct {
	name string
	args string // JSON object
}

// reply decides the answer to conv from the Behavior and the formulas in the
// package comment.
func (c *call) reply(conv conversation) answer {
	u := Usage{InputTokens: max(1, Tokens(strings.Join(conv.prompt, "\n")))}
	u.CachedTokens = min(max(c.b.CachedTokens, 0), u.InputTokens)
	if c.s.kind == Anthropic {
		u.CacheWriteTokens = min(max(c.b.CacheWriteTokens, 0), u.InputTokens-u.CachedTokens)
	}
	switch {
	case c.b.ReasoningTokens > 0:
		u.ReasoningTokens = c.b.ReasoningTokens
	case conv.reasoning:
		u.ReasoningTokens = DefaultReasoningTokens
	}
	var a answer
	if conv.reasoning {
		a.thinking = strings.TrimSpace(strings.Repeat("think ", u.ReasoningTokens))
	}

	if t := pickTool(conv); t != nil && c.b.Text == "" {
		a.call = &toolCall{name: t.name, args: fakeArguments(t.schema)}
		u.OutputTokens = ToolCallTokens + u.ReasoningTokens
		a.usage = u
		return a
	}
	text := c.b.Text
	if text == "" {
		echo := strings.Fields(conv.lastUser)
		text = strings.TrimSpace("fake-" + c.s.opts.Name + " reply: " + strings.Join(echo[:min(len(echo), echoWords)], " "))
	}
	if words := strings.Fields(text); conv.maxTokens > 0 && len(words) > conv.maxTokens {
		text = strings.Join(words[:conv.maxTokens], " ")
		a.truncated = true
	}
	a.text = text
	a.words = streamPieces(text)
	u.OutputTokens = Tokens(text) + u.ReasoningTokens
	a.usage = u
	return a
}

// streamPieces splits text into stream deltas, one word each, keeping the
// spaces so that the deltas join back to text exactly.
func streamPieces(text string) []string {
	var out []string
	start := 0
	for i := 1; i <= len(text); i++ {
		if i == len(text) || (text[i] == ' ' || text[i] == '\n') && text[i-1] != ' ' && text[i-1] != '\n' {
			out = append(out, text[start:i])
			start = i
		}
	}
	if len(out) == 0 {
		out = []string{""}
	}
	return out
}

// pickTool is the offered tool the last user message names, if any.
func pickTool(conv conversation) *tool {
	if conv.lastUser == "" {
		return nil
	}
	for i := range conv.tools {
		if conv.tools[i].name != "" && strings.Contains(conv.lastUser, conv.tools[i].name) {
			return &conv.tools[i]
		}
	}
	return nil
}

// fakeArguments fills every property of a JSON schema with a fixed value
// of its type.
func fakeArguments(schema json.RawMessage) string {
	var s struct {
		Properties map[string]struct {
			Type any `json:"type"`
		} `json:"properties"`
	}
	_ = json.Unmarshal(schema, &s) // no schema, no arguments
	args := map[string]any{}
	for name, p := range s.Properties {
		typ, _ := p.Type.(string)
		if types, ok := p.Type.([]any); ok && len(types) > 0 {
			typ, _ = types[0].(string)
		}
		switch strings.ToLower(typ) {
		case "number", "integer":
			args[name] = 1
		case "boolean":
			args[name] = true
		case "array":
			args[name] = []any{}
		case "object":
			args[name] = map[string]any{}
		default:
			args[name] = "fake"
		}
	}
	out, _ := json.Marshal(args) // sorted keys: the same arguments every time
	return string(out)
}

// splitArgs cuts JSON arguments into three stream deltas, as providers
// stream them in pieces that are not valid JSON on their own.
func splitArgs(args string) []string {
	n := len(args)
	if n < 3 {
		return []string{args}
	}
	return []string{args[:n/3], args[n/3 : 2*n/3], args[2*n/3:]}
}

// embedding is the fake's vector for an input: dims components from a hash
// of the input, scaled to unit length.
func embedding(input string, dims int) []float32 {
	v := make([]float32, dims)
	var norm float64
	for i := range v {
		h := sha256.Sum256([]byte(fmt.Sprintf("%d:%s", i, input)))
		x := float64(binary.BigEndian.Uint32(h[:4]))/math.MaxUint32*2 - 1
		v[i] = float32(x)
		norm += x * x
	}
	norm = math.Sqrt(norm)
	for i := range v {
		v[i] = float32(float64(v[i]) / norm)
	}
	return v
}

// textOf reads OpenAI- and Anthropic-style content: a string, or an array of
// parts whose "text" (and nested "content", for tool results) is collected.
func textOf(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] == 'n' {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var parts []struct {
		Text    string          `json:"text"`
		Content json.RawMessage `json:"content"`
		Output  json.RawMessage `json:"output"`
	}
	if json.Unmarshal(raw, &parts) != nil {
		return ""
	}
	var texts []string
	for _, p := range parts {
		for _, t := range []string{p.Text, textOf(p.Content), textOf(p.Output)} {
			if t != "" {
				texts = append(texts, t)
			}
		}
	}
	return strings.Join(texts, "\n")
}

// obj is a JSON object under construction.
type obj = map[string]any
