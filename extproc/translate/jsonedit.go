package translate

import (
	"bytes"
	"encoding/json"
	"errors"
	"sort"
	"strconv"
	"unicode/utf8"
)

// This file holds the two JSON tools of the hot path that encoding/json does
// not offer: finding a top-level member's value without decoding the document
// (to rewrite "model" while every other byte survives, and to test whether a
// stream chunk carries usage), and writing JSON strings by hand for the
// events built on every SSE chunk.

var errMalformedJSON = errors.New("malformed JSON")

// member is one member of a JSON object: its key as written between the
// quotes, and the offsets of its value in the scanned document.
type member struct {
	key        []byte
	escaped    bool // key contains a backslash escape
	start, end int
}

// is reports whether the member's key is name.
func (m member) is(name string) bool {
	if !m.escaped {
		return string(m.key) == name
	}
	var k string
	if err := json.Unmarshal(append(append([]byte{'"'}, m.key...), '"'), &k); err != nil {
		return false
	}
	return k == name
}

// scanObject calls fn for each member of the object starting at b[off]
// (after optional white space) and returns the offset just past its closing
// brace. It checks structure only as far as it must to find the members;
// callers that need a valid document check json.Valid first.
func scanObject(b []byte, off int, fn func(m member) error) (int, error) {
	i := skipSpace(b, off)
	if i >= len(b) || b[i] != '{' {
		return 0, errMalformedJSON
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, nil
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return 0, errMalformedJSON
		}
		ke, escaped, err := skipString(b, i)
		if err != nil {
			return 0, err
		}
		key := b[i+1 : ke-1]
		i = skipSpace(b, ke)
		if i >= len(b) || b[i] != ':' {
			return 0, errMalformedJSON
		}
		vs := skipSpace(b, i+1)
		ve, err := skipValue(b, vs)
		if err != nil {
			return 0, err
		}
		if err := fn(member{key: key, escaped: escaped, start: vs, end: ve}); err != nil {
			return 0, err
		}
		i = skipSpace(b, ve)
		if i >= len(b) {
			return 0, errMalformedJSON
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case '}':
			return i + 1, nil
		default:
			return 0, errMalformedJSON
		}
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// skipString returns the offset just past the string starting at b[i] (a
// quote), and whether it contains escapes.
func skipString(b []byte, i int) (end int, escaped bool, err error) {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '"':
			return j + 1, escaped, nil
		case '\\':
			escaped = true
			j++
		}
	}
	return 0, false, errMalformedJSON
}

// skipValue returns the offset just past the value starting at b[i].
func skipValue(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, errMalformedJSON
	}
	switch b[i] {
	case '"':
		end, _, err := skipString(b, i)
		return end, err
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end, _, err := skipString(b, j)
				if err != nil {
					return 0, err
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, nil
				}
			}
		}
		return 0, errMalformedJSON
	default:
		j := i
		for j < len(b) {
			switch b[j] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				if j == i {
					return 0, errMalformedJSON
				}
				return j, nil
			}
			j++
		}
		if j == i {
			return 0, errMalformedJSON
		}
		return j, nil
	}
}

// scanArray calls fn with the span of each element of the array starting at
// b[off] (after optional white space).
func scanArray(b []byte, off int, fn func(s span) error) error {
	i := skipSpace(b, off)
	if i >= len(b) || b[i] != '[' {
		return errMalformedJSON
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == ']' {
		return nil
	}
	for {
		e, err := skipValue(b, i)
		if err != nil {
			return err
		}
		if err := fn(span{i, e}); err != nil {
			return err
		}
		i = skipSpace(b, e)
		if i >= len(b) {
			return errMalformedJSON
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case ']':
			return nil
		default:
			return errMalformedJSON
		}
	}
}

// topLevel finds the values of the named top-level members of the object b.
// A name given twice in the document is an error: a client could otherwise
// show the policy check one "model" and the provider another.
func topLevel(b []byte, names ...string) (spans []span, found []bool, end int, err error) {
	spans = make([]span, len(names))
	found = make([]bool, len(names))
	end, err = scanObject(b, 0, func(m member) error {
		for k, n := range names {
			if m.is(n) {
				if found[k] {
					return &duplicateKeyError{name: n}
				}
				found[k] = true
				spans[k] = span{m.start, m.end}
			}
		}
		return nil
	})
	return spans, found, end, err
}

type duplicateKeyError struct{ name string }

func (e *duplicateKeyError) Error() string { return "duplicate member " + strconv.Quote(e.name) }

// edit replaces b[start:end] with text; start == end inserts.
type edit struct {
	start, end int
	text       []byte
}

// applyEdits returns b with the non-overlapping edits applied, in one copy.
func applyEdits(b []byte, edits []edit) []byte {
	sort.SliceStable(edits, func(i, j int) bool { return edits[i].start < edits[j].start })
	n := len(b)
	for _, e := range edits {
		n += len(e.text) - (e.end - e.start)
	}
	out := make([]byte, 0, n)
	at := 0
	for _, e := range edits {
		out = append(out, b[at:e.start]...)
		out = append(out, e.text...)
		at = e.end
	}
	return append(out, b[at:]...)
}

// insertMember returns the edit that adds "name":value as the last member of
// the object that ends (closing brace) at b[end-1].
func insertMember(b []byte, objStart, end int, name string, value []byte) edit {
	brace := end - 1
	var t []byte
	// An empty object needs no comma before the new member.
	if len(bytes.TrimSpace(b[objStart+1:brace])) > 0 {
		t = append(t, ',')
	}
	t = appendJSONString(t, name)
	t = append(t, ':')
	t = append(t, value...)
	return edit{start: brace, end: brace, text: t}
}

// isNull reports whether the value b (already trimmed) is JSON null or absent.
func isNull(b []byte) bool { return len(b) == 0 || string(b) == "null" }

// appendJSONString appends s as a JSON string. Unlike encoding/json it does
// not escape <, > and &: these bytes go to API clients, not into HTML.
// Invalid UTF-8 becomes U+FFFD, as encoding/json does; U+2028 and U+2029 are
// escaped so that the output is also valid JavaScript.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

func appendInt(dst []byte, v int64) []byte { return strconv.AppendInt(dst, v, 10) }

const hexDigits = "0123456789abcdef"

// appendIntMember appends a JSON member "name":v, preceded by a comma.
func appendIntMember(dst []byte, name string, v int64) []byte {
	dst = append(dst, ',', '"')
	dst = append(dst, name...)
	dst = append(dst, '"', ':')
	return strconv.AppendInt(dst, v, 10)
}

// marshal encodes v without HTML escaping and without the trailing newline
// that json.Encoder adds.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte{'\n'}), nil
}

// outputCapEdits returns the edits that cap a request's output limit at
// limit (Target.MaxOutputTokens) in place. names are the limit members the
// provider reads, spans and found where topLevel found them. Each member the
// client set above limit is lowered to it; when the client set none (all
// absent or null), insert is set to limit, replacing a null insert member or
// added as the last member of the object that starts at objStart and ends at
// end. A limit that is not a number is refused: with a cap in force, a value
// Tollgate cannot compare must not reach a lenient provider.
func outputCapEdits(body []byte, objStart, end int, names []string, spans []span, found []bool, insert string, limit int64) ([]edit, error) {
	var edits []edit
	set := false
	insertAt := -1
	for i, name := range names {
		if !found[i] {
			continue
		}
		v := body[spans[i].start:spans[i].end]
		if isNull(v) {
			if name == insert {
				insertAt = i
			}
			continue
		}
		if v[0] != '-' && (v[0] < '0' || v[0] > '9') {
			return nil, badRequest(CodeInvalidType, name, "Invalid type for '%s': expected an integer, got %s.", name, jsonKind(v))
		}
		set = true
		// A number too large for float64 parses as +Inf (with an error),
		// which is above any limit.
		if f, _ := strconv.ParseFloat(string(v), 64); f > float64(limit) {
			edits = append(edits, edit{spans[i].start, spans[i].end, appendInt(nil, limit)})
		}
	}
	if set {
		return edits, nil
	}
	if insertAt >= 0 {
		return []edit{{spans[insertAt].start, spans[insertAt].end, appendInt(nil, limit)}}, nil
	}
	return []edit{insertMember(body, objStart, end, insert, appendInt(nil, limit))}, nil
}
