package tokencount

import (
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// The counts OpenAI publishes in its cookbook, "How to count tokens with
// tiktoken" (github.com/openai/openai-cookbook,
// examples/How_to_count_tokens_with_tiktoken.ipynb, sections 3 and 5), and
// the two-token "hello world" of both encodings ([24912, 2375] in
// o200k_base, [15339, 1917] in cl100k_base).
func TestCountPublished(t *testing.T) {
	tests := []struct {
		text          string
		o200k, cl100k int64
	}{
		{"hello world", 2, 2},
		{"tiktoken is great!", 6, 6},
		{"antidisestablishmentarianism", 6, 6},
		{"2 + 2 = 4", 7, 7},
		{"お誕生日おめでとう", 8, 9},
		{"", 0, 0},
	}
	for _, tt := range tests {
		if got := O200kBase.Count(tt.text); got != tt.o200k {
			t.Errorf("o200k_base: Count(%q) = %d, want %d", tt.text, got, tt.o200k)
		}
		if got := Count(tt.text); got != tt.o200k {
			t.Errorf("Count(%q) = %d, want the o200k_base count %d", tt.text, got, tt.o200k)
		}
		if got := Cl100kBase.Count(tt.text); got != tt.cl100k {
			t.Errorf("cl100k_base: Count(%q) = %d, want %d", tt.text, got, tt.cl100k)
		}
	}
}

// Special tokens are ordinary text: a client's "<|endoftext|>" must neither
// panic (tiktoken's Encode does, by default) nor count as one token.
func TestCountSpecialTokensAsText(t *testing.T) {
	if got := Count("<|endoftext|>"); got <= 1 {
		t.Errorf("Count(<|endoftext|>) = %d, want it counted as text (several tokens)", got)
	}
}

// Long texts are counted in segments; for text with spaces the count must
// be exactly the count of the whole text in one piece.
func TestCountSegmentsExactly(t *testing.T) {
	tk, err := O200kBase.load()
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	words := []string{"the", "gateway", "counts", "tokens,", "func(x int)", "{\"a\":1}", "—", "naïve", "東京", "\n\n", "  ", "\t", "2026", "!!", "A", "URL:", "https://example.com/a?b=c"}
	for range 20 {
		var b strings.Builder
		for b.Len() < 20<<10 {
			b.WriteString(words[r.IntN(len(words))])
			if r.IntN(3) > 0 {
				b.WriteByte(' ')
			}
		}
		text := b.String()
		want := int64(len(tk.EncodeOrdinary(text)))
		if got := Count(text); got != want {
			t.Fatalf("Count = %d, whole-text count %d, for %d bytes", got, want, len(text))
		}
	}
}

// A long run without spaces must not take quadratic time: 1 MiB of one
// letter would take minutes in one piece.
func TestCountLongRunIsBounded(t *testing.T) {
	if err := Warm(); err != nil {
		t.Fatal(err)
	}
	// Repetitive text is the BPE worst case; counting it must finish (a
	// quadratic merge would not, in any test timeout) and give a plausible
	// count. Its speed is measured by the benchmarks, not asserted here.
	for _, s := range []string{"a", "=", "漢", "😀"} {
		text := strings.Repeat(s, (1<<20)/len(s))
		n := Count(text)
		if n < int64(len(text))/256 || n > int64(len(text)) {
			t.Errorf("Count(1 MiB of %q) = %d, implausible", s, n)
		}
	}
}

func TestSegmentEndKeepsCharacters(t *testing.T) {
	text := strings.Repeat("漢", 1000) // 3000 bytes, no space
	for len(text) > 0 {
		n := segmentEnd(text)
		if n == 0 || n > maxSegment || !strings.HasPrefix(text[n:]+"漢", "漢") {
			t.Fatalf("segmentEnd cut at %d", n)
		}
		text = text[n:]
	}
}

func TestForModel(t *testing.T) {
	for model, want := range map[string]Encoding{
		"gpt-4o": O200kBase, "gpt-4o-mini-2024-07-18": O200kBase, "gpt-4.1": O200kBase, "o3-mini": O200kBase, "gpt-5": O200kBase,
		"gpt-4": Cl100kBase, "gpt-4-0613": Cl100kBase, "gpt-3.5-turbo": Cl100kBase, "text-embedding-3-small": Cl100kBase,
		"text-embedding-ada-002": Cl100kBase, "claude-sonnet-4-5": O200kBase, "gemini-2.5-pro": O200kBase, "my-azure-deployment": O200kBase,
	} {
		if got := ForModel(model); got != want {
			t.Errorf("ForModel(%q) = %v, want %v", model, got, want)
		}
	}
}

// The cache of short texts gives the tokenizer's counts, also once it has
// been emptied for being full.
func TestCountCache(t *testing.T) {
	for i := range maxCached + 10 {
		text := " w" + strconv.Itoa(i)
		if got, want := Count(text), O200kBase.count(text); got != want {
			t.Fatalf("Count(%q) = %d, uncached %d", text, got, want)
		}
		if got, want := Count(text), O200kBase.count(text); got != want {
			t.Fatalf("cached Count(%q) = %d, uncached %d", text, got, want)
		}
	}
	if n := caches[O200kBase].size.Load(); n > maxCached {
		t.Errorf("cache of %d entries", n)
	}
}

func TestCountConcurrently(t *testing.T) {
	const text = "Concurrent counts must agree with each other and with the sequential count."
	want := Count(text)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				if got := Count(text); got != want {
					t.Errorf("Count = %d, want %d", got, want)
					return
				}
			}
		})
	}
	wg.Wait()
}

func FuzzCount(f *testing.F) {
	f.Add("hello world")
	f.Add("\xff\xfe not UTF-8 \xc3")
	f.Add(strings.Repeat("x ", 600) + strings.Repeat("漢", 500))
	f.Fuzz(func(t *testing.T, text string) {
		n := Count(text)
		if n < 0 || n > 3*int64(len(text))+1 || (text != "" && n == 0) {
			t.Errorf("Count(%q) = %d", text, n)
		}
	})
}

// BenchmarkCount is the cost of one count, by text size: a one-token
// delta (cached, and as the tokenizer counts it), an Anthropic-sized delta,
// and a 4 KiB batch.
func BenchmarkCount(b *testing.B) {
	if err := Warm(); err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name, text string
		count      func(string) int64
	}{
		{"delta_6B_cached", " world", Count},
		{"delta_6B", " world", O200kBase.count},
		{"delta_44B", "Paris is the capital of France, a country in", Count},
		{"batch_4KiB", strings.Repeat("The quick brown fox jumps over the lazy dog. ", 91), Count},
	} {
		b.Run(c.name, func(b *testing.B) {
			c.count(c.text)
			b.SetBytes(int64(len(c.text)))
			b.ReportAllocs()
			for b.Loop() {
				c.count(c.text)
			}
		})
	}
}
