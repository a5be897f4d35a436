package testdataplane

import (
	"net/http"
	"slices"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
)

// headerMap holds headers the way Envoy does: lower-case keys, insertion
// order kept, repeated keys as separate entries, and the pseudo-headers
// (":method", ":path", ":authority", ":scheme", ":status") as ordinary
// entries, because that is what ext_proc sees and mutates and what route
// matching and the access log read.
type headerMap struct {
	entries []headerEntry
}

type headerEntry struct {
	key, value string
}

// get returns the first value of key.
func (h *headerMap) get(key string) (string, bool) {
	for _, e := range h.entries {
		if e.key == key {
			return e.value, true
		}
	}
	return "", false
}

// value returns the first value of key, or "".
func (h *headerMap) value(key string) string {
	v, _ := h.get(key)
	return v
}

// joined returns every value of key joined with ",", which is how Envoy's
// header matchers and the access log see a repeated header.
func (h *headerMap) joined(key string) (string, bool) {
	var vs []string
	for _, e := range h.entries {
		if e.key == key {
			vs = append(vs, e.value)
		}
	}
	if vs == nil {
		return "", false
	}
	return strings.Join(vs, ","), true
}

func (h *headerMap) has(key string) bool {
	_, ok := h.get(key)
	return ok
}

// set replaces every value of key with one value, kept at the position of
// the first one (Envoy's setCopy).
func (h *headerMap) set(key, value string) {
	out := h.entries[:0]
	placed := false
	for _, e := range h.entries {
		if e.key != key {
			out = append(out, e)
			continue
		}
		if !placed {
			out = append(out, headerEntry{key, value})
			placed = true
		}
	}
	if !placed {
		out = append(out, headerEntry{key, value})
	}
	h.entries = out
}

// add appends a value.
func (h *headerMap) add(key, value string) {
	h.entries = append(h.entries, headerEntry{key, value})
}

// del removes every value of key.
func (h *headerMap) del(key string) {
	h.entries = slices.DeleteFunc(h.entries, func(e headerEntry) bool { return e.key == key })
}

// toProto is the HeaderMap an ext_proc server receives. Values travel in
// raw_value, as Envoy sends them since the send_header_raw_value runtime
// default flipped (ENVOY-EXTPROC-NOTES §4).
func (h *headerMap) toProto() *corev3.HeaderMap {
	out := &corev3.HeaderMap{Headers: make([]*corev3.HeaderValue, 0, len(h.entries))}
	for _, e := range h.entries {
		out.Headers = append(out.Headers, &corev3.HeaderValue{Key: e.key, RawValue: []byte(e.value)})
	}
	return out
}

// hopByHop are connection-level headers that Envoy's HTTP/1 codec and the
// connection manager never forward.
var hopByHop = []string{"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"}

// toHTTP copies the regular (non-pseudo, non hop-by-hop) headers into an
// http.Header for Go's client or server, keeping the lower-case keys that
// Envoy sends (Go writes keys as given when they are set directly).
func (h *headerMap) toHTTP() http.Header {
	out := make(http.Header, len(h.entries))
	for _, e := range h.entries {
		if strings.HasPrefix(e.key, ":") || slices.Contains(hopByHop, e.key) || e.key == "host" {
			continue
		}
		ck := http.CanonicalHeaderKey(e.key)
		out[ck] = append(out[ck], e.value)
	}
	return out
}

// fromHTTP appends Go's header map in a stable order: Go does not keep the
// order headers arrived in, so keys are sorted.
func (h *headerMap) fromHTTP(hdr http.Header) {
	keys := make([]string, 0, len(hdr))
	for k := range hdr {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		lk := strings.ToLower(k)
		for _, v := range hdr[k] {
			h.add(lk, v)
		}
	}
}

// validHeaderName reports whether name is a valid lower-case HTTP header
// name (an RFC 9110 token) or a pseudo-header.
func validHeaderName(name string) bool {
	if name == "" {
		return false
	}
	if name[0] == ':' {
		name = name[1:]
		if name == "" {
			return false
		}
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c >= 'A' && c <= 'Z' {
			continue // lower-cased by the caller, as Envoy does
		}
		if !isTokenChar(c) {
			return false
		}
	}
	return true
}

func isTokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c >= 'A' && c <= 'Z':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// validHeaderValue rejects the characters Envoy's HeaderUtility refuses in a
// value: NUL, CR and LF.
func validHeaderValue(v string) bool {
	return !strings.ContainsAny(v, "\x00\r\n")
}
