package fakeprovider

import (
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate-dev/tollgate/controlplane/secret"
)

// Request is one request a fake received, and what it answered.
type Request struct {
	Seq      int // 1 for the server's first request
	Method   string
	Path     string
	RawQuery string
	Header   http.Header
	Body     []byte
	Start    time.Time
	// End is when the answer was complete (or cut); zero while the fake is
	// still answering, e.g. in the middle of a stream.
	End time.Time

	// Status is the HTTP status answered (0 until headers are written).
	Status int
	// Usage is the usage the answer carries, by the package's formulas;
	// UsageReported says whether it reached the wire (not when the fake was
	// told to leave it out, or cut the stream before it).
	Usage         Usage
	UsageReported bool
	// Events counts the stream events written; Cut says the fake dropped
	// the connection on purpose (x-fake-cut-after) or the client left.
	Events int
	Cut    bool
}

// Query parses RawQuery.
func (r *Request) Query() url.Values {
	q, _ := url.ParseQuery(r.RawQuery)
	return q
}

// JSON decodes the body into v.
func (r *Request) JSON(v any) error { return json.Unmarshal(r.Body, v) }

// Model is the body's "model", or for Gemini and Azure the model or
// deployment named in the path.
func (r *Request) Model() string {
	if i := strings.Index(r.Path, "/models/"); i >= 0 {
		m := r.Path[i+len("/models/"):]
		m, _, _ = strings.Cut(m, ":")
		return m
	}
	if i := strings.Index(r.Path, "/deployments/"); i >= 0 {
		m, _, _ := strings.Cut(r.Path[i+len("/deployments/"):], "/")
		return m
	}
	var b struct {
		Model string `json:"model"`
	}
	_ = json.Unmarshal(r.Body, &b)
	return b.Model
}

func (r *Request) copy() Request {
	c := *r
	c.Header = r.Header.Clone()
	c.Body = append([]byte(nil), r.Body...)
	return c
}

func (s *Server) record(r *http.Request, body []byte) *Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := &Request{
		Seq:      len(s.requests) + 1,
		Method:   r.Method,
		Path:     r.URL.Path,
		RawQuery: r.URL.RawQuery,
		Header:   r.Header.Clone(),
		Body:     body,
		Start:    time.Now(),
	}
	if r.Host != "" {
		rec.Header.Set("Host", r.Host)
	}
	s.requests = append(s.requests, rec)
	return rec
}

// Requests returns copies of every request received so far, oldest first.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Request, len(s.requests))
	for i, r := range s.requests {
		out[i] = r.copy()
	}
	return out
}

// LastRequest returns the latest request; ok is false when there is none.
func (s *Server) LastRequest() (r Request, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.requests) == 0 {
		return Request{}, false
	}
	return s.requests[len(s.requests)-1].copy(), true
}

// Reset forgets the recorded requests and the queued behaviours (not the
// Script function).
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = nil
	s.queue = nil
}

// TB is the part of testing.TB that AssertNoTollgateSecrets uses, so that
// this package does not import testing into `tollgate dev`.
type TB interface {
	Helper()
	Errorf(format string, args ...any)
}

// InternalHeaderPrefix starts the names of the headers that Tollgate uses
// between its own components; none may reach a provider.
const InternalHeaderPrefix = "x-tollgate-"

// tollgateSecret matches Tollgate's bearer secrets (API keys, admin and
// operator tokens), and also their display prefixes: a provider should not
// see even those.
var tollgateSecret = regexp.MustCompile(`(?:` +
	regexp.QuoteMeta(secret.APIKey.Prefix()) + `|` +
	regexp.QuoteMeta(secret.AdminToken.Prefix()) + `|` +
	regexp.QuoteMeta(secret.OperatorToken.Prefix()) +
	`)[0-9A-Za-z]{` + strconv.Itoa(secret.DisplayLen) + `,}`)

// AssertNoTollgateSecrets fails t for every recorded request that carries
// a Tollgate secret (tg-…, tgadm-…, tgop-…) or any of the given plaintext
// secrets anywhere — path, query, a header, the body — or a header named
// x-tollgate-…. A provider must see its own credential and nothing of
// Tollgate's.
func AssertNoTollgateSecrets(t TB, recorded []Request, secrets ...string) {
	t.Helper()
	for _, r := range recorded {
		where := r.Method + " " + r.Path
		check := func(part, text string) {
			if m := tollgateSecret.FindString(text); m != "" {
				t.Errorf("%s: the provider received a Tollgate secret %q in %s", where, secret.Redact(m), part)
			}
			for _, s := range secrets {
				if s != "" && strings.Contains(text, s) {
					t.Errorf("%s: the provider received the secret %q in %s", where, secret.Redact(s), part)
				}
			}
		}
		check("the path", r.Path)
		check("the query", r.RawQuery)
		if q, err := url.QueryUnescape(r.RawQuery); err == nil {
			check("the query", q)
		}
		for name, values := range r.Header {
			if strings.HasPrefix(strings.ToLower(name), InternalHeaderPrefix) {
				t.Errorf("%s: the provider received Tollgate's internal header %s", where, name)
			}
			for _, v := range values {
				check("header "+name, v)
			}
		}
		check("the body", string(r.Body))
	}
}
