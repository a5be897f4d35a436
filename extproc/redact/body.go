package redact

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Fields are the places in a request body that hold prompt text, as paths
// of member names from the top-level object; "*" stands for any element of
// an array. A path names string values: "messages.*.content" is the
// content of every message when it is a string, "messages.*.content.*.text"
// the text of every content part when it is a list. Strings elsewhere (the
// model, roles, ids, tool names, image and file data) are left alone.
type Fields [][]string

// ParseFields builds Fields from dotted paths.
func ParseFields(paths ...string) Fields {
	f := make(Fields, len(paths))
	for i, p := range paths {
		f[i] = strings.Split(p, ".")
	}
	return f
}

// The prompt text of each client API Tollgate serves.
var (
	// OpenAI Chat Completions: every message's text (system, developer,
	// user, assistant, tool results), including the arguments of tool
	// calls that the conversation replays.
	OpenAIChat = ParseFields(
		"messages.*.content", "messages.*.content.*.text",
		"messages.*.tool_calls.*.function.arguments",
	)
	// OpenAI Responses: instructions and input, as a string or as items
	// (messages with text or input_text parts, function call arguments and
	// outputs).
	OpenAIResponses = ParseFields(
		"instructions", "input", "input.*.content", "input.*.content.*.text",
		"input.*.arguments", "input.*.output",
	)
	// OpenAI Embeddings: the input string or strings (token arrays are
	// numbers, left alone).
	OpenAIEmbeddings = ParseFields("input", "input.*")
	// Anthropic Messages: the system prompt and every message's text,
	// including tool results.
	AnthropicMessages = ParseFields(
		"system", "system.*.text",
		"messages.*.content", "messages.*.content.*.text",
		"messages.*.content.*.content", "messages.*.content.*.content.*.text",
	)
)

// ErrNotJSON is returned for a body that is not a JSON object.
var ErrNotJSON = errors.New("redact: the body is not a JSON object")

// Body returns body with the strings at fields redacted, and what it
// replaced. Everything else stays byte for byte; a body with nothing to
// redact is returned as it is.
func Body(body []byte, fields Fields) ([]byte, Counts, error) {
	w := walker{src: body, fields: fields}
	w.path = w.pathBuf[:0]
	i := w.space(0)
	if i >= len(body) || body[i] != '{' {
		return nil, Counts{}, ErrNotJSON
	}
	end, err := w.value(i)
	if err != nil {
		return nil, Counts{}, err
	}
	if w.space(end) != len(body) {
		return nil, Counts{}, fmt.Errorf("%w: text after the object at byte %d", ErrNotJSON, end)
	}
	if w.out == nil {
		return body, w.counts, nil
	}
	w.out = append(w.out, body[w.copied:]...)
	return w.out, w.counts, nil
}

// walker scans a JSON document once, keeping the path to the current
// value, and splices redacted strings into out.
type walker struct {
	src    []byte
	fields Fields
	// path holds member names (slices of src, or decoded when escaped)
	// and arrayElem for array elements.
	path    [][]byte
	pathBuf [8][]byte
	out     []byte // nil until the first change
	copied  int    // src[:copied] is in out
	counts  Counts
	depth   int
}

// arrayElem stands in the path for an element of an array, as "*" does in
// Fields.
var arrayElem = []byte("*")

// maxDepth bounds nesting, as encoding/json does, so a hostile body cannot
// exhaust the stack.
const maxDepth = 10000

func (w *walker) space(i int) int {
	for i < len(w.src) {
		switch w.src[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

func (w *walker) errAt(i int, what string) error {
	return fmt.Errorf("%w: %s at byte %d", ErrNotJSON, what, i)
}

// value reads the value at i and returns its end.
func (w *walker) value(i int) (int, error) {
	if i >= len(w.src) {
		return 0, w.errAt(i, "unexpected end")
	}
	switch w.src[i] {
	case '{':
		return w.object(i)
	case '[':
		return w.array(i)
	case '"':
		end, escaped, err := w.stringEnd(i)
		if err != nil {
			return 0, err
		}
		if w.matches() {
			w.redactString(i, end, escaped)
		}
		return end, nil
	default:
		j := i
		for j < len(w.src) && (isAlnum(w.src[j]) || w.src[j] == '-' || w.src[j] == '+' || w.src[j] == '.') {
			j++
		}
		if j == i {
			return 0, w.errAt(i, "unexpected character")
		}
		return j, nil
	}
}

func (w *walker) enter(i int) error {
	w.depth++
	if w.depth > maxDepth {
		return w.errAt(i, "nesting too deep")
	}
	return nil
}

func (w *walker) object(i int) (int, error) {
	if err := w.enter(i); err != nil {
		return 0, err
	}
	defer func() { w.depth-- }()
	i = w.space(i + 1)
	if i < len(w.src) && w.src[i] == '}' {
		return i + 1, nil
	}
	for {
		if i >= len(w.src) || w.src[i] != '"' {
			return 0, w.errAt(i, "expected a member name")
		}
		end, escaped, err := w.stringEnd(i)
		if err != nil {
			return 0, err
		}
		name := w.src[i+1 : end-1]
		if escaped {
			var decoded string
			if err := json.Unmarshal(w.src[i:end], &decoded); err != nil {
				return 0, w.errAt(i, "bad member name")
			}
			name = []byte(decoded)
		}
		i = w.space(end)
		if i >= len(w.src) || w.src[i] != ':' {
			return 0, w.errAt(i, "expected ':'")
		}
		w.path = append(w.path, name)
		i, err = w.value(w.space(i + 1))
		w.path = w.path[:len(w.path)-1]
		if err != nil {
			return 0, err
		}
		i = w.space(i)
		if i < len(w.src) && w.src[i] == ',' {
			i = w.space(i + 1)
			continue
		}
		if i < len(w.src) && w.src[i] == '}' {
			return i + 1, nil
		}
		return 0, w.errAt(i, "expected ',' or '}'")
	}
}

func (w *walker) array(i int) (int, error) {
	if err := w.enter(i); err != nil {
		return 0, err
	}
	defer func() { w.depth-- }()
	i = w.space(i + 1)
	if i < len(w.src) && w.src[i] == ']' {
		return i + 1, nil
	}
	w.path = append(w.path, arrayElem)
	defer func() { w.path = w.path[:len(w.path)-1] }()
	for {
		var err error
		i, err = w.value(i)
		if err != nil {
			return 0, err
		}
		i = w.space(i)
		if i < len(w.src) && w.src[i] == ',' {
			i = w.space(i + 1)
			continue
		}
		if i < len(w.src) && w.src[i] == ']' {
			return i + 1, nil
		}
		return 0, w.errAt(i, "expected ',' or ']'")
	}
}

// stringEnd returns the end of the string starting at i (after its closing
// quote) and whether it holds escapes.
func (w *walker) stringEnd(i int) (int, bool, error) {
	escaped := false
	for j := i + 1; j < len(w.src); j++ {
		switch w.src[j] {
		case '"':
			return j + 1, escaped, nil
		case '\\':
			escaped = true
			j++
		}
	}
	return 0, false, w.errAt(i, "unterminated string")
}

func (w *walker) matches() bool {
	for _, f := range w.fields {
		if len(f) != len(w.path) {
			continue
		}
		ok := true
		for k, seg := range f {
			if seg != "*" && seg != string(w.path[k]) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// redactString replaces the string src[i:end] when redaction changes it.
func (w *walker) redactString(i, end int, escaped bool) {
	raw := w.src[i+1 : end-1]
	var text string
	if escaped {
		if err := json.Unmarshal(w.src[i:end], &text); err != nil {
			return // stringEnd accepted it; encoding/json did not: leave it
		}
	} else {
		text = string(raw)
	}
	var c Counts
	red := Text(text, &c)
	if c.Total() == 0 {
		return
	}
	w.counts.Add(c)
	if w.out == nil {
		w.out = make([]byte, 0, len(w.src)+64)
	}
	w.out = append(w.out, w.src[w.copied:i]...)
	w.out = appendJSONString(w.out, red)
	w.copied = end
}

// appendJSONString writes s as a JSON string, escaping only what JSON
// requires (not <, > and &, as encoding/json would); invalid UTF-8 becomes
// U+FFFD, as encoding/json writes it.
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			switch {
			case b == '"' || b == '\\':
				dst = append(dst, '\\', b)
			case b == '\n':
				dst = append(dst, '\\', 'n')
			case b == '\r':
				dst = append(dst, '\\', 'r')
			case b == '\t':
				dst = append(dst, '\\', 't')
			case b < 0x20:
				dst = append(dst, '\\', 'u', '0', '0', hex[b>>4], hex[b&0xf])
			default:
				dst = append(dst, b)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, "\\ufffd"...)
		} else {
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return append(dst, '"')
}
