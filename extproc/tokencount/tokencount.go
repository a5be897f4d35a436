// Package tokencount counts the tokens of a text with OpenAI's tiktoken
// encodings, offline: the encodings are compiled into the binary
// (github.com/pkoukk/tiktoken-go-loader), so nothing is downloaded, ever.
//
// Tollgate counts tokens itself only when a provider does not: a stream cut
// before the provider's usage report, or a server that reports no usage. The
// usage record is then marked estimated (see extproc/translate).
//
// # Accuracy
//
// For OpenAI models the count of a text is the count the model's encoding
// gives: O200kBase for GPT-4o and OpenAI's later models, Cl100kBase for
// GPT-4, GPT-3.5 and the text-embedding-3 and ada-002 embedding models
// (ForModel picks). Texts with a run of more than 1 KiB without a space are
// the exception, see Count.
//
// For Anthropic and Gemini models the count is an approximation: their
// tokenizers are not public. Anthropic does not compare its tokenizer with
// tiktoken; it documents that Claude Opus 4.7 and later models use a newer
// tokenizer that makes about 30% more tokens of the same text than earlier
// Claude models (platform.claude.com, "Token counting"). Third-party
// measurements, which Anthropic has not confirmed, found Claude 3.5 Sonnet
// using about 20-30% more tokens than GPT-4o for the same prompts, so expect
// O200kBase to undercount Claude by a fifth or more, and more on recent
// models. Google documents only that a Gemini token is "about 4 characters";
// how far O200kBase is from Gemini's counts is unknown.
//
// # Cost
//
// An encoding is loaded on first use, once per process: about 0.2 s and
// 22 MB of heap for O200kBase (Warm loads it ahead, at start-up). The four
// embedded encoding files add about 7 MB to the binary. Counting costs about
// 150 ns per byte of English text, and about 0.8 µs for a one-token text
// (tiktoken-go matches its pre-tokenizing pattern with a backtracking regular
// expression engine); counts of texts of up to 24 bytes are cached, which
// brings a streamed delta that was seen before down to about 10 ns. Callers
// on a hot path count only what they must (see extproc/translate's
// usageMeter).
//
// Every function is safe for concurrent use.
package tokencount

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	tiktoken "github.com/pkoukk/tiktoken-go"
	loader "github.com/pkoukk/tiktoken-go-loader"
)

// Encoding is a tiktoken encoding.
type Encoding int

// The encodings Tollgate counts with. The zero value is the default.
const (
	// O200kBase is the encoding of GPT-4o and OpenAI's later models (GPT-4.1,
	// the o-series, GPT-5), and Tollgate's default for every other model.
	O200kBase Encoding = iota
	// Cl100kBase is the encoding of GPT-4, GPT-3.5 and the
	// text-embedding-3 and ada-002 embedding models.
	Cl100kBase
)

var encodingNames = [...]string{O200kBase: "o200k_base", Cl100kBase: "cl100k_base"}

func (e Encoding) String() string {
	if e >= 0 && int(e) < len(encodingNames) {
		return encodingNames[e]
	}
	return fmt.Sprintf("Encoding(%d)", int(e))
}

// ForModel returns the encoding of an OpenAI model, by the prefixes tiktoken
// uses, and O200kBase for every other name (other providers' models, Azure
// deployment names).
func ForModel(model string) Encoding {
	switch {
	case strings.HasPrefix(model, "gpt-4o"), strings.HasPrefix(model, "gpt-4.1"), strings.HasPrefix(model, "gpt-4.5"):
		return O200kBase
	case model == "gpt-4", strings.HasPrefix(model, "gpt-4-"), strings.HasPrefix(model, "gpt-3.5"),
		strings.HasPrefix(model, "text-embedding-3-"), model == "text-embedding-ada-002":
		return Cl100kBase
	}
	return O200kBase
}

// Count returns the number of tokens of text in O200kBase.
func Count(text string) int64 { return O200kBase.Count(text) }

// maxSegment bounds the text given to the tokenizer at once. tiktoken-go's
// byte-pair merge is quadratic in the length of one pre-tokenized piece (a
// run of letters, of punctuation, of CJK characters or emoji): 16 KiB of one
// letter take 90 ms, 1 MiB would take minutes. Cutting the text into
// segments of at most maxSegment bytes bounds that at about 0.5 ms a
// segment.
const maxSegment = 1 << 10

// Count returns the number of tokens of text, as tiktoken's encode_ordinary
// counts them (special tokens such as "<|endoftext|>" are ordinary text).
//
// Long texts are counted in segments of at most 1 KiB, cut before a space
// that follows a printable ASCII character. A pre-tokenized piece never
// spans such a cut (a space there always starts a new piece, in both
// encodings), so the count is exact. A stretch of more than 1 KiB with no
// such space (a long CJK paragraph, base64, a line of one repeated
// character) is cut at a character boundary instead; each of those cuts can
// change the count by a token or so.
//
// Counts of texts of up to 24 bytes are cached. If the encoding cannot be
// loaded (it is embedded, so only a broken build could cause that), Count
// falls back to one token per four bytes; Warm reports the error.
func (e Encoding) Count(text string) int64 {
	if text == "" {
		return 0
	}
	enc := e
	if enc < 0 || int(enc) >= len(encodings) {
		enc = O200kBase
	}
	if len(text) > maxCachedText {
		return enc.count(text)
	}
	c := &caches[enc]
	if n, ok := c.m.Load(text); ok {
		return n.(int64)
	}
	n := enc.count(text)
	if c.size.Add(1) > maxCached {
		// Full: start again, so that the cache follows what is streamed now.
		c.m.Clear()
		c.size.Store(0)
	}
	c.m.Store(strings.Clone(text), n)
	return n
}

// Short texts, streamed deltas mostly, are counted once: the tokenizer takes
// about a microsecond even for one token, a cache hit about 10 ns, and a
// stream's deltas repeat (" the", ",", "\n"). The cache is emptied when it
// reaches maxCached entries (a few MB).
const (
	maxCachedText = 24
	maxCached     = 1 << 15
)

var caches [len(encodingNames)]struct {
	m    sync.Map // text → int64
	size atomic.Int64
}

// count is Count without the cache.
func (e Encoding) count(text string) int64 {
	tk, err := e.load()
	if err != nil {
		return int64(len(text)+3) / 4
	}
	var n int64
	for len(text) > 0 {
		seg := text[:segmentEnd(text)]
		n += int64(len(tk.EncodeOrdinary(seg)))
		text = text[len(seg):]
	}
	return n
}

// segmentEnd returns the length of the first segment of text (see Count).
func segmentEnd(text string) int {
	if len(text) <= maxSegment {
		return len(text)
	}
	for i := maxSegment; i > 0; i-- {
		if text[i] == ' ' && text[i-1] > ' ' && text[i-1] < 0x7f {
			return i
		}
	}
	// No clean cut: back up to the start of a character, so that no
	// character is split in two.
	i := maxSegment
	for i > 0 && !utf8.RuneStart(text[i]) {
		i--
	}
	if i == 0 {
		return maxSegment // not UTF-8 at all
	}
	return i
}

// Warm loads the given encodings (O200kBase when none is given), so that the
// first count does not pay for it, and reports an encoding that cannot be
// loaded.
func Warm(encs ...Encoding) error {
	if len(encs) == 0 {
		encs = []Encoding{O200kBase}
	}
	for _, e := range encs {
		if _, err := e.load(); err != nil {
			return err
		}
	}
	return nil
}

var (
	// setLoader installs the offline loader once. tiktoken-go keeps its
	// loader in a package variable, so it is set before the first encoding
	// is loaded and never again.
	setLoader = sync.OnceFunc(func() { tiktoken.SetBpeLoader(loader.NewOfflineLoader()) })

	encodings = [...]func() (*tiktoken.Tiktoken, error){
		O200kBase:  sync.OnceValues(func() (*tiktoken.Tiktoken, error) { return get(O200kBase) }),
		Cl100kBase: sync.OnceValues(func() (*tiktoken.Tiktoken, error) { return get(Cl100kBase) }),
	}
)

func get(e Encoding) (*tiktoken.Tiktoken, error) {
	setLoader()
	tk, err := tiktoken.GetEncoding(e.String())
	if err != nil {
		return nil, fmt.Errorf("tokencount: loading %s: %w", e, err)
	}
	return tk, nil
}

func (e Encoding) load() (*tiktoken.Tiktoken, error) {
	if e < 0 || int(e) >= len(encodings) {
		return encodings[O200kBase]()
	}
	return encodings[e]()
}
