package redact

import (
	"bytes"
	"encoding/json"
	"testing"
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
