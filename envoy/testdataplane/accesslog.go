package testdataplane

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// accessLogFormat is a parsed SubstitutionFormatString: either a JSON
// dictionary or a text template, made of Envoy's %COMMAND% operators.
type accessLogFormat struct {
	json map[string]any // values: template, map[string]any, or a literal
	text template
}

// template is literal text and operators.
type template []templatePart

type templatePart struct {
	literal string
	op      *operator
}

type operator struct {
	name   string
	arg    string // header name for REQ/RESP
	alt    string // REQ(X?Y): used when X is absent
	maxLen int
}

// numeric operators render as JSON numbers in json_format (which is typed
// since Envoy 1.29).
var numericOperators = map[string]bool{
	"RESPONSE_CODE": true, "BYTES_RECEIVED": true, "BYTES_SENT": true,
	"DURATION": true, "UPSTREAM_REQUEST_ATTEMPT_COUNT": true,
}

var knownOperators = map[string]bool{
	"START_TIME": true, "REQ": true, "REQUEST_HEADER": true, "RESP": true, "RESPONSE_HEADER": true,
	"PROTOCOL": true, "RESPONSE_CODE": true, "RESPONSE_FLAGS": true, "RESPONSE_CODE_DETAILS": true,
	"ROUTE_NAME": true, "UPSTREAM_CLUSTER": true, "UPSTREAM_HOST": true,
	"UPSTREAM_TRANSPORT_FAILURE_REASON": true, "BYTES_RECEIVED": true, "BYTES_SENT": true,
	"DURATION": true, "UPSTREAM_REQUEST_ATTEMPT_COUNT": true, "DOWNSTREAM_REMOTE_ADDRESS": true,
	"LOCAL_REPLY_BODY": true,
}

func buildAccessLogFormat(s *streamv3.StdoutAccessLog) (*accessLogFormat, error) {
	lf := s.GetLogFormat()
	switch {
	case lf == nil:
		// Envoy's default format would apply; Tollgate always sets one and
		// the default is not modelled.
		return nil, errors.New("a log_format is required (Envoy's default format is not modelled)")
	case lf.GetJsonFormat() != nil:
		m, err := parseJSONFormat(lf.GetJsonFormat())
		if err != nil {
			return nil, err
		}
		if jsonUses(m, "LOCAL_REPLY_BODY") {
			return nil, errLocalReplyBodyInAccessLog
		}
		return &accessLogFormat{json: m}, nil
	case lf.GetTextFormatSource() != nil:
		t, err := parseTemplate(lf.GetTextFormatSource().GetInlineString())
		if err != nil {
			return nil, err
		}
		if t.uses("LOCAL_REPLY_BODY") {
			return nil, errLocalReplyBodyInAccessLog
		}
		return &accessLogFormat{text: t}, nil
	}
	return nil, errors.New("log_format has no format")
}

// errLocalReplyBodyInAccessLog: %LOCAL_REPLY_BODY% is modelled in local
// reply formats only.
var errLocalReplyBodyInAccessLog = errors.New("%LOCAL_REPLY_BODY% in an access log is not modelled")

func (t template) uses(op string) bool {
	for _, p := range t {
		if p.op != nil && p.op.name == op {
			return true
		}
	}
	return false
}

func jsonUses(m map[string]any, op string) bool {
	for _, v := range m {
		switch x := v.(type) {
		case template:
			if x.uses(op) {
				return true
			}
		case map[string]any:
			if jsonUses(x, op) {
				return true
			}
		}
	}
	return false
}

func parseJSONFormat(s *structpb.Struct) (map[string]any, error) {
	out := map[string]any{}
	for k, v := range s.GetFields() {
		switch x := v.GetKind().(type) {
		case *structpb.Value_StringValue:
			t, err := parseTemplate(x.StringValue)
			if err != nil {
				return nil, fmt.Errorf("json_format %q: %w", k, err)
			}
			out[k] = t
		case *structpb.Value_StructValue:
			m, err := parseJSONFormat(x.StructValue)
			if err != nil {
				return nil, err
			}
			out[k] = m
		default:
			out[k] = v.AsInterface()
		}
	}
	return out, nil
}

func parseTemplate(s string) (template, error) {
	var out template
	for s != "" {
		i := strings.IndexByte(s, '%')
		if i < 0 {
			out = append(out, templatePart{literal: s})
			break
		}
		if i > 0 {
			out = append(out, templatePart{literal: s[:i]})
		}
		s = s[i+1:]
		j := strings.IndexByte(s, '%')
		if j < 0 {
			return nil, fmt.Errorf("unterminated %% operator in %q", s)
		}
		if j == 0 {
			out = append(out, templatePart{literal: "%"})
			s = s[1:]
			continue
		}
		op, err := parseOperator(s[:j])
		if err != nil {
			return nil, err
		}
		out = append(out, templatePart{op: op})
		s = s[j+1:]
	}
	return out, nil
}

func parseOperator(s string) (*operator, error) {
	op := &operator{}
	if k := strings.LastIndex(s, "):"); k >= 0 {
		n, err := strconv.Atoi(s[k+2:])
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("bad length in %%%s%%", s)
		}
		op.maxLen = n
		s = s[:k+1]
	}
	if p := strings.IndexByte(s, '('); p >= 0 {
		if !strings.HasSuffix(s, ")") {
			return nil, fmt.Errorf("bad operator %%%s%%", s)
		}
		op.name, op.arg = s[:p], s[p+1:len(s)-1]
		if a, b, ok := strings.Cut(op.arg, "?"); ok {
			op.arg, op.alt = a, b
		}
		op.arg, op.alt = strings.ToLower(op.arg), strings.ToLower(op.alt)
	} else {
		op.name = s
	}
	if !knownOperators[op.name] {
		return nil, fmt.Errorf("access log operator %%%s%% is not modelled", op.name)
	}
	switch op.name {
	case "REQ", "REQUEST_HEADER", "RESP", "RESPONSE_HEADER":
		if op.arg == "" {
			return nil, fmt.Errorf("%%%s%% needs a header name", op.name)
		}
	default:
		if op.arg != "" {
			// START_TIME(format) and friends are not modelled.
			return nil, fmt.Errorf("arguments to %%%s%% are not modelled", op.name)
		}
	}
	return op, nil
}

// logEntry is what the access log can say about one request.
type logEntry struct {
	start            time.Time
	duration         time.Duration
	reqHeaders       *headerMap
	respHeaders      *headerMap
	protocol         string
	responseCode     int
	flags            []string
	details          string
	routeName        string
	upstreamCluster  string
	upstreamHost     string
	upstreamFailure  string
	bytesReceived    int64
	bytesSent        int64
	attempts         int
	downstreamRemote string
	localReplyBody   string // the body of the stream's local reply, if it made one
}

// eval returns the operator's value: a string, an int64, or nil when unset.
func (op *operator) eval(e *logEntry) any {
	str := func(s string) any {
		if s == "" {
			return nil
		}
		if op.maxLen > 0 && len(s) > op.maxLen {
			s = s[:op.maxLen]
		}
		return s
	}
	header := func(h *headerMap) any {
		if h == nil {
			return nil
		}
		v, ok := h.joined(op.arg)
		if !ok && op.alt != "" {
			v, ok = h.joined(op.alt)
		}
		if !ok {
			return nil
		}
		return str(v)
	}
	switch op.name {
	case "START_TIME":
		return e.start.UTC().Format("2006-01-02T15:04:05.000Z")
	case "REQ", "REQUEST_HEADER":
		return header(e.reqHeaders)
	case "RESP", "RESPONSE_HEADER":
		return header(e.respHeaders)
	case "PROTOCOL":
		return str(e.protocol)
	case "RESPONSE_CODE":
		return int64(e.responseCode)
	case "RESPONSE_FLAGS":
		if len(e.flags) == 0 {
			return "-"
		}
		return strings.Join(e.flags, ",")
	case "RESPONSE_CODE_DETAILS":
		return str(e.details)
	case "ROUTE_NAME":
		return str(e.routeName)
	case "UPSTREAM_CLUSTER":
		return str(e.upstreamCluster)
	case "UPSTREAM_HOST":
		return str(e.upstreamHost)
	case "UPSTREAM_TRANSPORT_FAILURE_REASON":
		return str(e.upstreamFailure)
	case "BYTES_RECEIVED":
		return e.bytesReceived
	case "BYTES_SENT":
		return e.bytesSent
	case "DURATION":
		return e.duration.Milliseconds()
	case "UPSTREAM_REQUEST_ATTEMPT_COUNT":
		return int64(e.attempts)
	case "DOWNSTREAM_REMOTE_ADDRESS":
		return str(e.downstreamRemote)
	case "LOCAL_REPLY_BODY":
		return str(e.localReplyBody)
	}
	return nil
}

// render renders a template as text: unset values become "-", as in
// Envoy's text format.
func (t template) render(e *logEntry) string {
	var b strings.Builder
	for _, p := range t {
		if p.op == nil {
			b.WriteString(p.literal)
			continue
		}
		switch v := p.op.eval(e).(type) {
		case nil:
			b.WriteString("-")
		case int64:
			b.WriteString(strconv.FormatInt(v, 10))
		case string:
			b.WriteString(v)
		}
	}
	return b.String()
}

// typed renders a json_format value: a lone operator keeps its type (a
// number, or null when unset); anything else is a string.
func (t template) typed(e *logEntry) any {
	if len(t) == 1 && t[0].op != nil {
		v := t[0].op.eval(e)
		if v == nil {
			return nil
		}
		if i, ok := v.(int64); ok && !numericOperators[t[0].op.name] {
			return strconv.FormatInt(i, 10)
		}
		return v
	}
	return t.render(e)
}

func renderJSON(m map[string]any, e *logEntry) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		switch x := v.(type) {
		case template:
			out[k] = x.typed(e)
		case map[string]any:
			out[k] = renderJSON(x, e)
		default:
			out[k] = x
		}
	}
	return out
}

// line renders one access log line, newline-terminated for JSON (Envoy
// writes one JSON object per line); text formats carry their own newline.
func (f *accessLogFormat) line(e *logEntry) []byte {
	if f.json != nil {
		b, err := json.Marshal(renderJSON(f.json, e))
		if err != nil {
			b = []byte(fmt.Sprintf(`{"access_log_error":%q}`, err.Error()))
		}
		return append(b, '\n')
	}
	return []byte(f.text.render(e))
}

// accessLogWriter serialises lines to one writer (stdout in production, a
// buffer in tests).
type accessLogWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (a *accessLogWriter) write(formats []*accessLogFormat, e *logEntry) {
	if a == nil || a.w == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, f := range formats {
		_, _ = a.w.Write(f.line(e))
	}
}

// sortedFlags orders response flags as Envoy prints them (a stable order;
// tests compare sets).
func sortedFlags(flags map[string]bool) []string {
	out := make([]string, 0, len(flags))
	for f := range flags {
		out = append(out, f)
	}
	sort.Strings(out)
	return out
}
