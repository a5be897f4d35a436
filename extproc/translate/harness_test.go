package translate

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/extproc/tokencount"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

// fixture reads a provider response written for these tests in the
// provider's wire format (testdata/provider/<kind>/...).
func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "provider", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// golden compares got with testdata/golden/<name>, or rewrites it with
// -update.
func golden(t testing.TB, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("output differs from %s (run go test -update after checking the change):\n got: %s\nwant: %s", path, got, want)
	}
}

// tokens is the tokenizer's count of text: the output estimate of a response
// cut (or unreported) after streaming text, when text fits one batch.
func tokens(text string) int64 { return tokencount.Count(text) }

// exchange is one provider response to replay through a translator.
type exchange struct {
	api         ClientAPI
	target      Target
	opts        ResponseOptions
	status      int
	contentType string
}

type result struct {
	out       string
	usage     Usage
	err       error
	clientCT  string
	chunksOut []string // output per input chunk
}

// run feeds the chunks to a new translator, the last one with endOfStream.
func run(t testing.TB, ex exchange, chunks [][]byte) result {
	t.Helper()
	rt := NewResponseTranslator(ex.api, ex.target, ex.opts)
	status := ex.status
	if status == 0 {
		status = 200
	}
	var r result
	r.clientCT = rt.Headers(status, ex.contentType)
	var out bytes.Buffer
	for i, c := range chunks {
		b, err := rt.Chunk(c, i == len(chunks)-1)
		out.Write(b)
		r.chunksOut = append(r.chunksOut, string(b))
		if err != nil && r.err == nil {
			r.err = err
		}
	}
	r.out = out.String()
	r.usage = rt.Usage()
	return r
}

// runSplits replays body whole, then split at every byte boundary (or at
// many random points for long bodies), one byte at a time, and at random;
// every way must give the same output, usage and error.
func runSplits(t testing.TB, ex exchange, body []byte) result {
	t.Helper()
	whole := run(t, ex, [][]byte{body})
	check := func(how string, chunks [][]byte) {
		t.Helper()
		got := run(t, ex, chunks)
		if got.out != whole.out {
			t.Fatalf("%s: output differs from the unsplit run:\n got: %q\nwant: %q", how, got.out, whole.out)
		}
		if got.usage != whole.usage {
			t.Fatalf("%s: usage %+v, unsplit %+v", how, got.usage, whole.usage)
		}
		if fmt.Sprint(got.err) != fmt.Sprint(whole.err) {
			t.Fatalf("%s: error %v, unsplit %v", how, got.err, whole.err)
		}
	}
	if len(body) <= 4096 {
		for i := 0; i <= len(body); i++ {
			check(fmt.Sprintf("split at %d", i), [][]byte{body[:i], body[i:]})
		}
	}
	ones := make([][]byte, 0, len(body)+1)
	for i := range body {
		ones = append(ones, body[i:i+1])
	}
	check("one byte at a time", append(ones, nil))
	r := rand.New(rand.NewPCG(uint64(len(body)), 99))
	for i := range 50 {
		check(fmt.Sprintf("random split %d", i), randomSplit(r, body))
	}
	return whole
}

// jsonEqual reports whether two JSON documents are equal as values.
func jsonEqual(t testing.TB, a, b []byte) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		t.Fatalf("not JSON: %v: %s", err, a)
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		t.Fatalf("not JSON: %v: %s", err, b)
	}
	return reflect.DeepEqual(va, vb)
}

// chatSummary is what a client library assembles from a chat completion
// stream: the translation is right when this is right.
type chatSummary struct {
	ID        string
	Model     string
	Content   map[int]string
	Reasoning map[int]string
	Refusal   map[int]string
	Tools     map[int][]toolSummary
	Finish    map[int]string
	Usage     *openAIUsage
	Done      bool
	Error     string
	Events    int
}

type toolSummary struct {
	ID, Name, Args, Signature string
}

// summarizeChatStream parses an OpenAI chat.completion.chunk stream strictly:
// every data line must be JSON, and the stream must follow OpenAI's rules.
func summarizeChatStream(t testing.TB, stream string) chatSummary {
	t.Helper()
	s := chatSummary{Content: map[int]string{}, Reasoning: map[int]string{}, Refusal: map[int]string{}, Tools: map[int][]toolSummary{}, Finish: map[int]string{}}
	evs, err := parseChunks(t, [][]byte{[]byte(stream)})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		if !ev.HasData {
			continue
		}
		s.Events++
		if s.Done {
			t.Fatalf("event after [DONE]: %q", ev.Data)
		}
		if ev.Data == "[DONE]" {
			s.Done = true
			continue
		}
		var c struct {
			ID      string `json:"id"`
			Object  string `json:"object"`
			Model   string `json:"model"`
			Choices []struct {
				Index int `json:"index"`
				Delta struct {
					Role             string  `json:"role"`
					Content          *string `json:"content"`
					ReasoningContent string  `json:"reasoning_content"`
					Refusal          string  `json:"refusal"`
					ToolCalls        []struct {
						Index        int    `json:"index"`
						ID           string `json:"id"`
						Type         string `json:"type"`
						ExtraContent *struct {
							Google struct {
								ThoughtSignature string `json:"thought_signature"`
							} `json:"google"`
						} `json:"extra_content"`
						Function struct {
							Name      string `json:"name"`
							Arguments string `json:"arguments"`
						} `json:"function"`
					} `json:"tool_calls"`
				} `json:"delta"`
				FinishReason *string `json:"finish_reason"`
			} `json:"choices"`
			Usage *openAIUsage `json:"usage"`
			Error *struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		dec := json.NewDecoder(strings.NewReader(ev.Data))
		if err := dec.Decode(&c); err != nil {
			t.Fatalf("chunk is not JSON: %v: %s", err, ev.Data)
		}
		if c.Error != nil {
			s.Error = c.Error.Message
			continue
		}
		if c.Object != "chat.completion.chunk" {
			t.Fatalf("object = %q in %s", c.Object, ev.Data)
		}
		if s.ID == "" {
			s.ID, s.Model = c.ID, c.Model
		} else if c.ID != s.ID {
			t.Fatalf("chunk id changed from %q to %q", s.ID, c.ID)
		}
		if c.Usage != nil {
			if len(c.Choices) != 0 {
				t.Fatalf("usage chunk with choices: %s", ev.Data)
			}
			s.Usage = c.Usage
		}
		for _, ch := range c.Choices {
			if ch.Delta.Content != nil {
				s.Content[ch.Index] += *ch.Delta.Content
			}
			s.Reasoning[ch.Index] += ch.Delta.ReasoningContent
			s.Refusal[ch.Index] += ch.Delta.Refusal
			for _, tc := range ch.Delta.ToolCalls {
				tools := s.Tools[ch.Index]
				if tc.ID != "" {
					if tc.Index != len(tools) {
						t.Fatalf("tool call index %d starts out of order (have %d)", tc.Index, len(tools))
					}
					ts := toolSummary{ID: tc.ID, Name: tc.Function.Name}
					if tc.ExtraContent != nil {
						ts.Signature = tc.ExtraContent.Google.ThoughtSignature
					}
					tools = append(tools, ts)
				}
				if tc.Index >= len(tools) {
					t.Fatalf("arguments for tool call %d before its start", tc.Index)
				}
				tools[tc.Index].Args += tc.Function.Arguments
				s.Tools[ch.Index] = tools
			}
			if ch.FinishReason != nil {
				if _, dup := s.Finish[ch.Index]; dup {
					t.Fatalf("two finish reasons for choice %d", ch.Index)
				}
				s.Finish[ch.Index] = *ch.FinishReason
			}
		}
	}
	return s
}

func errorIs[T error](err error) bool {
	var target T
	return errors.As(err, &target)
}

// errorAs returns the first error of type T in err's chain.
func errorAs[T error](err error) (T, bool) {
	var target T
	ok := errors.As(err, &target)
	return target, ok
}
