package redact

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// Redacting text twice finds nothing new: placeholders never look like a
// value, and nothing a replacement leaves behind does either.
func FuzzText(f *testing.F) {
	for _, c := range textCases {
		f.Add(c.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var c1, c2 Counts
		once := Text(s, &c1)
		twice := Text(once, &c2)
		if twice != once || c2.Total() != 0 {
			t.Errorf("Text is not stable: %q → %q → %q (%v)", s, once, twice, c2)
		}
		if c1.Total() == 0 && once != s {
			t.Errorf("changed %q without counting: %q", s, once)
		}
	})
}

// Every JSON object is accepted and stays valid JSON; what is not at a
// prompt path stays as it was.
func FuzzBody(f *testing.F) {
	f.Add(`{"model":"m","messages":[{"role":"user","content":"ada@example.com"}]}`)
	f.Add(`{"messages":[{"content":[{"type":"text","text":"4111 1111 1111 1111"}]}],"user":"x@y.com"}`)
	f.Add(`{"messages":[{"content":"\u0061da@example.com \ud83d\ude00"}]}`)
	f.Add(`{"a":[1,2,{"b":null,"c":true}],"messages":"x"}`)
	f.Fuzz(func(t *testing.T, in string) {
		out, counts, err := Body([]byte(in), OpenAIChat)
		var obj map[string]any
		isObject := json.Unmarshal([]byte(in), &obj) == nil && obj != nil
		if err != nil {
			if isObject {
				t.Fatalf("refused a JSON object %q: %v", in, err)
			}
			return
		}
		if !isObject {
			// The walker may accept what encoding/json refuses (it does not
			// check every literal); it must then change nothing.
			if counts.Total() == 0 && !bytes.Equal(out, []byte(in)) {
				t.Errorf("changed a body it had nothing to redact in")
			}
			return
		}
		var got map[string]any
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("%q became invalid JSON %q: %v", in, out, err)
		}
		delete(obj, "messages")
		delete(got, "messages")
		a, _ := json.Marshal(obj)
		b, _ := json.Marshal(got)
		if !bytes.Equal(a, b) {
			t.Errorf("members outside messages changed: %s → %s", a, b)
		}
	})
}

// appendJSONString writes what encoding/json reads back as the string
// (invalid UTF-8 as U+FFFD).
func FuzzJSONString(f *testing.F) {
	for _, s := range []string{"", "plain", "quote \" backslash \\ nl \n tab \t cr \r", "\x00\x1f\x7f", "<&>", "Grüße 😀", "bad \xff utf8 \xc3", "\u2028"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		enc := appendJSONString(nil, s)
		var got string
		if err := json.Unmarshal(enc, &got); err != nil {
			t.Fatalf("%q encoded as invalid JSON %s: %v", s, enc, err)
		}
		if want := strings.ToValidUTF8(s, "\uFFFD"); got != want && !invalidRunes(s) {
			t.Errorf("%q read back as %q", s, got)
		}
	})
}

// invalidRunes: ToValidUTF8 replaces a run of invalid bytes with one
// U+FFFD, encoding/json and appendJSONString one per byte; both are fine.
func invalidRunes(s string) bool { return !utf8.ValidString(s) }
