package translate

import (
	"encoding/json"

	"github.com/tollgate-dev/tollgate/extproc/tokencount"
)

// Usage is the token count of one request, in one convention for every
// provider (OpenAI's): the parts are included in the totals.
//
//   - InputTokens counts every prompt token the provider billed, including
//     the cached ones (CachedInputTokens) and the ones written to the cache
//     (CacheWriteInputTokens).
//   - OutputTokens counts every generated token, including reasoning
//     (ReasoningTokens).
//
// Per provider (docs/translation.md has the full table):
//
//   - OpenAI, Azure, compatible: InputTokens = prompt_tokens (Responses API:
//     input_tokens), Cached = prompt_tokens_details.cached_tokens, CacheWrite
//     = prompt_tokens_details.cache_write_tokens where a server reports it,
//     OutputTokens = completion_tokens, Reasoning =
//     completion_tokens_details.reasoning_tokens.
//   - Anthropic: its input_tokens excludes cache reads and writes, so
//     InputTokens = input_tokens + cache_read_input_tokens +
//     cache_creation_input_tokens, Cached = cache_read_input_tokens,
//     CacheWrite = cache_creation_input_tokens, OutputTokens = output_tokens
//     (which includes thinking); Reasoning stays 0 because Anthropic does not
//     report thinking tokens apart.
//   - Gemini: InputTokens = promptTokenCount (which includes
//     cachedContentTokenCount) + toolUsePromptTokenCount, Cached =
//     cachedContentTokenCount, OutputTokens = candidatesTokenCount +
//     thoughtsTokenCount (Gemini bills thoughts as output but leaves them out
//     of candidatesTokenCount), Reasoning = thoughtsTokenCount.
type Usage struct {
	InputTokens           int64
	OutputTokens          int64
	CachedInputTokens     int64
	CacheWriteInputTokens int64
	ReasoningTokens       int64
	// Estimated is set when the provider did not report usage, or the
	// response ended (or was cut) before the final report; the counts are
	// then the larger of what was reported and an estimate made with a
	// tokenizer (extproc/tokencount): the input from the request's text, the
	// output from the text generated so far.
	Estimated bool
}

// openAIUsage is the usage object of Chat Completions and Embeddings.
type openAIUsage struct {
	PromptTokens        int64 `json:"prompt_tokens"`
	CompletionTokens    int64 `json:"completion_tokens"`
	TotalTokens         int64 `json:"total_tokens"`
	PromptTokensDetails *struct {
		CachedTokens     int64 `json:"cached_tokens"`
		CacheWriteTokens int64 `json:"cache_write_tokens"`
	} `json:"prompt_tokens_details"`
	CompletionTokensDetails *struct {
		ReasoningTokens int64 `json:"reasoning_tokens"`
	} `json:"completion_tokens_details"`
}

func (u *openAIUsage) usage() Usage {
	out := Usage{InputTokens: u.PromptTokens, OutputTokens: u.CompletionTokens}
	if d := u.PromptTokensDetails; d != nil {
		out.CachedInputTokens = d.CachedTokens
		out.CacheWriteInputTokens = d.CacheWriteTokens
	}
	if d := u.CompletionTokensDetails; d != nil {
		out.ReasoningTokens = d.ReasoningTokens
	}
	return out
}

// responsesUsage is the usage object of the Responses API.
type responsesUsage struct {
	InputTokens        int64 `json:"input_tokens"`
	OutputTokens       int64 `json:"output_tokens"`
	TotalTokens        int64 `json:"total_tokens"`
	InputTokensDetails *struct {
		CachedTokens int64 `json:"cached_tokens"`
	} `json:"input_tokens_details"`
	OutputTokensDetails *struct {
		ReasoningTokens int64 `json:"reasoning_tokens"`
	} `json:"output_tokens_details"`
}

func (u *responsesUsage) usage() Usage {
	out := Usage{InputTokens: u.InputTokens, OutputTokens: u.OutputTokens}
	if d := u.InputTokensDetails; d != nil {
		out.CachedInputTokens = d.CachedTokens
	}
	if d := u.OutputTokensDetails; d != nil {
		out.ReasoningTokens = d.ReasoningTokens
	}
	return out
}

// anthropicUsage is Anthropic's usage object. Fields are pointers because a
// message_delta event reports only some of them, and those it reports replace
// the ones message_start gave.
type anthropicUsage struct {
	InputTokens              *int64 `json:"input_tokens"`
	OutputTokens             *int64 `json:"output_tokens"`
	CacheCreationInputTokens *int64 `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     *int64 `json:"cache_read_input_tokens"`
}

// merge overwrites the fields that later reports.
func (u *anthropicUsage) merge(later *anthropicUsage) {
	if later == nil {
		return
	}
	if later.InputTokens != nil {
		u.InputTokens = later.InputTokens
	}
	if later.OutputTokens != nil {
		u.OutputTokens = later.OutputTokens
	}
	if later.CacheCreationInputTokens != nil {
		u.CacheCreationInputTokens = later.CacheCreationInputTokens
	}
	if later.CacheReadInputTokens != nil {
		u.CacheReadInputTokens = later.CacheReadInputTokens
	}
}

func (u *anthropicUsage) usage() Usage {
	read, write := deref(u.CacheReadInputTokens), deref(u.CacheCreationInputTokens)
	return Usage{
		InputTokens:           deref(u.InputTokens) + read + write,
		OutputTokens:          deref(u.OutputTokens),
		CachedInputTokens:     read,
		CacheWriteInputTokens: write,
	}
}

func deref(p *int64) int64 {
	if p == nil {
		return 0
	}
	return *p
}

// geminiUsage is Gemini's usageMetadata.
type geminiUsage struct {
	PromptTokenCount        int64 `json:"promptTokenCount"`
	CandidatesTokenCount    int64 `json:"candidatesTokenCount"`
	CachedContentTokenCount int64 `json:"cachedContentTokenCount"`
	ThoughtsTokenCount      int64 `json:"thoughtsTokenCount"`
	ToolUsePromptTokenCount int64 `json:"toolUsePromptTokenCount"`
	TotalTokenCount         int64 `json:"totalTokenCount"`
}

func (u *geminiUsage) usage() Usage {
	return Usage{
		InputTokens:       u.PromptTokenCount + u.ToolUsePromptTokenCount,
		OutputTokens:      u.CandidatesTokenCount + u.ThoughtsTokenCount,
		CachedInputTokens: u.CachedContentTokenCount,
		ReasoningTokens:   u.ThoughtsTokenCount,
	}
}

// usageMeter accumulates what a response translator learns about usage,
// and estimates what the provider did not report.
//
// Counting tokens costs about 150 ns a byte (extproc/tokencount), so the
// meter counts only what it must, and late:
//   - the input is counted from the request (countInput) the first time an
//     estimate is read, and only then;
//   - generated text is held back in batches of up to 4 KiB
//     (outputCounter), tokenized when a batch is full or the estimate is
//     read, and dropped untokenized once the provider's final report
//     arrives; after that report nothing more is held.
//
// A response whose usage the provider reports before anyone reads the meter
// is never tokenized. The estimate of generated text is the sum of the
// counts of its batches: exactly the tokenizer's count of the text when it
// fits one batch.
type usageMeter struct {
	reported Usage
	final    bool // the provider's final report was seen
	enc      tokencount.Encoding
	request  requestText // counted into estIn when first needed
	estIn    int64       // estimated input tokens; valid once inKnown
	inKnown  bool
	out      outputCounter // generated text, for the output estimate
}

func (m *usageMeter) report(u Usage, final bool) {
	m.reported = u
	if final {
		m.final = true
		m.out.drop()
	}
}

// addOutput adds generated text to the output estimate.
func (m *usageMeter) addOutput(s string) {
	if !m.final && s != "" {
		m.out.add(m.enc, s)
	}
}

func (m *usageMeter) usage() Usage {
	if m.final {
		return m.reported
	}
	if !m.inKnown {
		m.estIn, m.inKnown = countInput(m.enc, m.request), true
	}
	u := m.reported
	u.Estimated = true
	u.InputTokens = max(u.InputTokens, m.estIn)
	u.OutputTokens = max(u.OutputTokens, m.out.count(m.enc))
	return u
}

// appendOpenAIUsage appends an OpenAI Chat Completions usage object.
func appendOpenAIUsage(b []byte, u Usage) []byte {
	b = append(b, `{"prompt_tokens":`...)
	b = appendInt(b, u.InputTokens)
	b = appendIntMember(b, "completion_tokens", u.OutputTokens)
	b = appendIntMember(b, "total_tokens", u.InputTokens+u.OutputTokens)
	b = append(b, `,"prompt_tokens_details":{"cached_tokens":`...)
	b = appendInt(b, u.CachedInputTokens)
	b = append(b, `},"completion_tokens_details":{"reasoning_tokens":`...)
	b = appendInt(b, u.ReasoningTokens)
	return append(b, "}}"...)
}

// decodeUsage decodes the usage object at b[s.start:s.end] into v.
func decodeUsage(b []byte, s span, v any) bool {
	return json.Unmarshal(b[s.start:s.end], v) == nil
}
