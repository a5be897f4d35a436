package testdataplane

import (
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extprocsvc "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func TestNormalizePath(t *testing.T) {
	for in, want := range map[string]string{
		"/v1/chat/completions": "/v1/chat/completions",
		"/v1/./chat/../models": "/v1/models",
		"/../../etc":           "/etc",
		"/v1/%63hat":           "/v1/chat",  // unreserved escape decoded
		"/v1/a%2fb":            "/v1/a%2Fb", // reserved escape kept, upper-cased
		"/v1/models/.":         "/v1/models/",
	} {
		got, ok := normalizePath(in)
		if !ok || got != want {
			t.Errorf("normalizePath(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	if _, ok := normalizePath("/bad%zz"); ok {
		t.Error("a malformed escape was accepted")
	}
	if got := mergeSlashes("//v1///models"); got != "/v1/models" {
		t.Errorf("mergeSlashes = %q", got)
	}
}

// priorityLoad follows Envoy's arithmetic: health × 1.4 capped at 100,
// normalised, in priority order; nothing healthy → all on P0.
func TestPriorityLoad(t *testing.T) {
	for _, tc := range []struct {
		health   []int
		excluded map[int]bool
		want     []int
	}{
		{[]int{100, 100}, nil, []int{100, 0}},
		{[]int{70, 100}, nil, []int{70, 30}},
		{[]int{0, 100}, nil, []int{0, 100}},
		{[]int{0, 0}, nil, []int{100, 0}},
		{[]int{100, 100, 100}, map[int]bool{0: true}, []int{0, 100, 0}},
		{[]int{100, 100, 100}, map[int]bool{0: true, 1: true}, []int{0, 0, 100}},
		// Everything tried: previous_priorities starts over.
		{[]int{100, 100}, map[int]bool{0: true, 1: true}, []int{100, 0}},
		{[]int{30, 30}, nil, []int{50, 50}},
	} {
		if got := priorityLoad(tc.health, tc.excluded); !slices.Equal(got, tc.want) {
			t.Errorf("priorityLoad(%v, %v) = %v, want %v", tc.health, tc.excluded, got, tc.want)
		}
	}
}

func TestBackOffFollowsEnvoysJitter(t *testing.T) {
	p := &retryPolicy{baseInterval: 25 * time.Millisecond, maxInterval: 250 * time.Millisecond}
	// Retry n waits in [0, (2^n − 1) × 25 ms), and never more than 250 ms.
	limits := []time.Duration{25 * time.Millisecond, 75 * time.Millisecond, 175 * time.Millisecond, 250 * time.Millisecond, 250 * time.Millisecond}
	var longest [5]time.Duration
	for round := 0; round < 500; round++ {
		b := newBackOff(p)
		for i, lim := range limits {
			d := b.next()
			if d < 0 || d > lim || (lim < p.maxInterval && d == lim) {
				t.Fatalf("retry %d waited %v, limit %v", i+1, d, lim)
			}
			longest[i] = max(longest[i], d)
		}
	}
	// The jitter really grows: later retries wait longer than the first can.
	if longest[2] <= 25*time.Millisecond {
		t.Errorf("third retries waited at most %v", longest[2])
	}
}

func TestHeaderMatchers(t *testing.T) {
	exact := func(name, v string, invert bool) *routev3.HeaderMatcher {
		return &routev3.HeaderMatcher{Name: name, InvertMatch: invert, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{
			StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: v}}}}
	}
	present := func(name string, p bool) *routev3.HeaderMatcher {
		return &routev3.HeaderMatcher{Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: p}}
	}
	h := &headerMap{}
	h.add("x-tollgate-route", "model-a")
	h.add("x-multi", "a")
	h.add("x-multi", "b")
	for _, tc := range []struct {
		m    *routev3.HeaderMatcher
		want bool
	}{
		{exact("x-tollgate-route", "model-a", false), true},
		{exact("x-tollgate-route", "model-b", false), false},
		{exact("x-tollgate-route", "model-b", true), true},
		{exact("x-missing", "v", false), false},
		{exact("x-missing", "v", true), true}, // a missing header matches an inverted string matcher
		{exact("x-multi", "a,b", false), true},
		{present("x-tollgate-route", true), true},
		{present("x-missing", true), false},
		{present("x-missing", false), true},
	} {
		m, err := buildHeaderMatcher(tc.m)
		if err != nil {
			t.Fatal(err)
		}
		if got := m.matches(h); got != tc.want {
			t.Errorf("%v matches = %v, want %v", tc.m, got, tc.want)
		}
	}
}

func TestSelectVirtualHost(t *testing.T) {
	rt := &routeTable{vhosts: []*virtualHost{
		{name: "star", domains: []string{"*"}},
		{name: "suffix", domains: []string{"*.example.com"}},
		{name: "longer-suffix", domains: []string{"*.api.example.com"}},
		{name: "prefix", domains: []string{"api.*"}},
		{name: "exact", domains: []string{"api.example.com"}},
	}}
	for host, want := range map[string]string{
		"api.example.com":    "exact",
		"v1.api.example.com": "longer-suffix",
		"www.example.com":    "suffix",
		"api.other.org":      "prefix",
		"other.org":          "star",
	} {
		if got := rt.selectVirtualHost(host); got == nil || got.name != want {
			t.Errorf("%s → %v, want %s", host, got, want)
		}
	}
}

func TestDNSNameMatch(t *testing.T) {
	for _, tc := range []struct {
		want, san string
		ok        bool
	}{
		{"api.openai.com", "api.openai.com", true},
		{"api.openai.com", "API.openai.com", true},
		{"api.openai.com", "*.openai.com", true},
		{"a.b.openai.com", "*.openai.com", false},
		{"openai.com", "*.openai.com", false},
		{"127.0.0.1", "localhost", false},
	} {
		if got := dnsNameMatch(tc.want, tc.san); got != tc.ok {
			t.Errorf("dnsNameMatch(%q, %q) = %v", tc.want, tc.san, got)
		}
	}
}

// Envoy's default mutation rules for ext_proc header mutations.
func TestHeaderMutationRules(t *testing.T) {
	e := &extProcStream{cfg: &extProcConfig{name: "test"}, s: &stream{dp: &DataPlane{log: slog.New(slog.NewTextHandler(io.Discard, nil))}}}
	base := func() *headerMap {
		h := &headerMap{}
		for _, kv := range [][2]string{{":authority", "client"}, {":path", "/v1/chat"}, {":method", "POST"}, {":scheme", "http"},
			{"host", "client"}, {"content-length", "10"}, {"x-keep", "1"}, {"x-envoy-original", "e"}} {
			h.add(kv[0], kv[1])
		}
		return h
	}
	set := func(k, v string, appendMode bool) *corev3.HeaderValueOption {
		o := &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, RawValue: []byte(v)}}
		if appendMode {
			o.Append = wrapperspb.Bool(true) //nolint:staticcheck // the flag ext_proc reads
		}
		return o
	}
	h := base()
	err := e.applyHeaderMutation(&extprocsvc.HeaderMutation{
		SetHeaders: []*corev3.HeaderValueOption{
			set(":authority", "evil", false), set(":method", "GET", false), set("x-envoy-retry-on", "5xx", false),
			set(":path", "/v1/messages", false), set("X-Api-Key", "sk", false), set("x-keep", "2", true),
			set(":path", "/again", true), set("content-length", "99", false),
		},
		RemoveHeaders: []string{":path", "host", "x-envoy-original", "x-keep-not-there"},
	}, h, false, true)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{":authority": "client", ":method": "POST", ":path": "/v1/messages", "x-api-key": "sk",
		"host": "client", "content-length": "10", "x-envoy-original": "e", "x-keep": "1,2"}
	for k, v := range want {
		if got, _ := h.joined(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if h.has("x-envoy-retry-on") {
		t.Error("an x-envoy-* header was set")
	}
	// CONTINUE_AND_REPLACE may change :method.
	h = base()
	if err := e.applyHeaderMutation(&extprocsvc.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{set(":method", "GET", false)}}, h, true, false); err != nil || h.value(":method") != "GET" {
		t.Errorf(":method with CONTINUE_AND_REPLACE: %q, %v", h.value(":method"), err)
	}
	// A value sent in value alone becomes an empty header (envoy#31555).
	h = base()
	if err := e.applyHeaderMutation(&extprocsvc.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-v", Value: "lost"}}}}, h, false, false); err != nil || !h.has("x-v") || h.value("x-v") != "" {
		t.Errorf("value-only header: %q, %v", h.value("x-v"), err)
	}
	for name, m := range map[string]*extprocsvc.HeaderMutation{
		"both value and raw_value": {SetHeaders: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x", Value: "a", RawValue: []byte("b")}}}},
		"bad name":                 {SetHeaders: []*corev3.HeaderValueOption{set("bad name", "v", false)}},
		"bad value":                {SetHeaders: []*corev3.HeaderValueOption{set("x", "a\r\nb", false)}},
		"bad removal":              {RemoveHeaders: []string{"bad\nname"}},
	} {
		if err := e.applyHeaderMutation(m, base(), false, false); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestAccessLogFormats(t *testing.T) {
	req := &headerMap{}
	req.add(":path", "/v1/messages")
	req.add("x-envoy-original-path", "/v1/chat/completions")
	req.add(":method", "POST")
	e := &logEntry{start: time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.UTC), reqHeaders: req, responseCode: 200, attempts: 2, duration: 1500 * time.Millisecond}
	tmpl, err := parseTemplate(`[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%" %RESPONSE_CODE% %RESPONSE_FLAGS% %UPSTREAM_HOST% %DURATION%ms 100%%`)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := tmpl.render(e), `[2026-01-02T03:04:05.006Z] "POST /v1/chat/completions" 200 - - 1500ms 100%`; got != want {
		t.Errorf("text:\n got %s\nwant %s", got, want)
	}
	js := map[string]any{}
	for k, v := range map[string]string{"code": "%RESPONSE_CODE%", "host": "%UPSTREAM_HOST%", "mixed": "%RESPONSE_CODE% ok", "attempts": "%UPSTREAM_REQUEST_ATTEMPT_COUNT%"} {
		tm, err := parseTemplate(v)
		if err != nil {
			t.Fatal(err)
		}
		js[k] = tm
	}
	got := renderJSON(js, e)
	if got["code"] != int64(200) || got["host"] != nil || got["mixed"] != "200 ok" || got["attempts"] != int64(2) {
		t.Errorf("typed json %#v", got)
	}
	for _, bad := range []string{"%FILTER_STATE(x)%", "%REQ()%", "%START_TIME(%s)%", "%UNCLOSED"} {
		if _, err := parseTemplate(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
