package testdataplane

import (
	"encoding/json"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func goldenHCM(t *testing.T) *hcmv3.HttpConnectionManager {
	t.Helper()
	l := readGolden(t, filepath.Join(goldenDir, "openai.listeners.yaml"), func() *listenerv3.Listener { return &listenerv3.Listener{} })[0]
	hcm := &hcmv3.HttpConnectionManager{}
	if err := l.FilterChains[0].Filters[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
		t.Fatal(err)
	}
	return hcm
}

// The control plane's mappers, as the harness applies them: which local
// replies get which API's error shape.
func TestControlPlaneLocalReplyMappers(t *testing.T) {
	cfg, err := buildHCM(goldenHCM(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		path      string
		clientAPI string // in the stream's dynamic metadata; "" for none
		status    int
		body      string
		flags     []string
		want      string // "" when the reply must be left alone
	}{
		// After a try the request's :path is the provider's: the client's
		// API comes from the metadata ext_proc wrote.
		{"anthropic client, openai provider timed out", "/v1/chat/completions", "anthropic", 504, "upstream request timeout", []string{"UT"},
			`{"type":"error","error":{"type":"api_error","message":"The gateway could not get a response from the provider: upstream request timeout"}}`},
		{"openai client, anthropic provider reset", "/v1/messages", "openai", 503, "upstream connect error or disconnect/reset before headers. reset reason: connection termination", []string{"UC"},
			`{"error":{"type":"server_error","code":"upstream_unavailable","message":"The gateway could not get a response from the provider: upstream connect error or disconnect/reset before headers. reset reason: connection termination"}}`},
		{"anthropic no healthy upstream", "/v1/messages", "", 503, "no healthy upstream", []string{"UH"},
			`{"type":"error","error":{"type":"api_error","message":"The gateway could not get a response from the provider: no healthy upstream"}}`},
		{"openai retries exhausted", "/v1/responses", "", 503, "upstream connect error or disconnect/reset before headers. reset reason: connection failure", []string{"UF", "URX"},
			`{"error":{"type":"server_error","code":"upstream_unavailable","message":"The gateway could not get a response from the provider: upstream connect error or disconnect/reset before headers. reset reason: connection failure"}}`},
		{"openai 413", "/v1/embeddings", "", 413, "Payload Too Large", nil,
			`{"error":{"type":"invalid_request_error","code":"request_too_large","message":"The request body is larger than this gateway accepts (33554432 bytes). Send a smaller request."}}`},
		{"a flag the mappers do not list", "/v1/chat/completions", "", 408, "stream timeout", []string{"SI"}, ""},
		{"no route", "/v1/chat/completions", "", 404, "", []string{"NR"}, ""},
		{"a 503 without a flag", "/v1/messages", "anthropic", 503, `{"type":"error"}`, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &stream{hcm: cfg, flags: map[string]bool{}, req: &headerMap{}}
			s.req.add(":path", tc.path)
			s.addFlags(tc.flags...)
			if tc.clientAPI != "" {
				s.setDynamicMetadata("tollgate", &structpb.Struct{Fields: map[string]*structpb.Value{"client_api": structpb.NewStringValue(tc.clientAPI)}})
			}
			body, ct, mapped := s.mapLocalReply(&localReply{status: tc.status, body: tc.body})
			if tc.want == "" {
				if mapped {
					t.Errorf("mapped to %s", body)
				}
				return
			}
			if !mapped || ct != "application/json" {
				t.Fatalf("mapped %v, content type %q", mapped, ct)
			}
			var got any
			if err := json.Unmarshal([]byte(body), &got); err != nil {
				t.Fatalf("%q: %v", body, err)
			}
			if gb, _ := json.Marshal(got); string(gb) != mustCanonical(t, tc.want) {
				t.Errorf("body %s\nwant %s", gb, tc.want)
			}
		})
	}
}

func mustCanonical(t *testing.T, s string) string {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// What the harness does not implement is refused, not ignored.
func TestUnmodelledLocalReplyConfigIsRefused(t *testing.T) {
	jsonFormat := &corev3.SubstitutionFormatString{Format: &corev3.SubstitutionFormatString_JsonFormat{
		JsonFormat: &structpb.Struct{Fields: map[string]*structpb.Value{"m": structpb.NewStringValue("%LOCAL_REPLY_BODY%")}},
	}}
	durationFilter := &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_DurationFilter{
		DurationFilter: &accesslogv3.DurationFilter{Comparison: &accesslogv3.ComparisonFilter{Value: &corev3.RuntimeUInt32{DefaultValue: 1, RuntimeKey: "k"}}},
	}}
	for name, tc := range map[string]struct {
		lrc       *hcmv3.LocalReplyConfig
		violation string // a modelcheck violation, or
		buildErr  bool   // an error building the harness's config
	}{
		"a mapper's status override": {
			lrc:       &hcmv3.LocalReplyConfig{Mappers: []*hcmv3.ResponseMapper{{Filter: durationFilter, StatusCode: wrapperspb.UInt32(400), BodyFormatOverride: jsonFormat}}},
			violation: "local_reply_config.mappers[0].status_code",
		},
		"a duration filter": {
			lrc:       &hcmv3.LocalReplyConfig{Mappers: []*hcmv3.ResponseMapper{{Filter: durationFilter, BodyFormatOverride: jsonFormat}}},
			violation: "local_reply_config.mappers[0].filter.duration_filter",
		},
		"a catch-all body format": {
			lrc:      &hcmv3.LocalReplyConfig{BodyFormat: jsonFormat},
			buildErr: true,
		},
	} {
		t.Run(name, func(t *testing.T) {
			hcm := goldenHCM(t)
			hcm.LocalReplyConfig = tc.lrc
			if tc.violation != "" {
				v := modelViolations(hcm)
				found := false
				for _, s := range v {
					found = found || strings.Contains(s, tc.violation)
				}
				if !found {
					t.Errorf("violations %q, want one naming %s", v, tc.violation)
				}
				return
			}
			if _, err := buildHCM(hcm); err == nil {
				t.Error("buildHCM accepted it")
			}
		})
	}
}

// %LOCAL_REPLY_BODY% is modelled in local reply formats, not access logs.
func TestLocalReplyBodyInAnAccessLogIsRefused(t *testing.T) {
	for name, lf := range map[string]*corev3.SubstitutionFormatString{
		"json": {Format: &corev3.SubstitutionFormatString_JsonFormat{JsonFormat: &structpb.Struct{Fields: map[string]*structpb.Value{
			"nested": structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{"m": structpb.NewStringValue("body: %LOCAL_REPLY_BODY%")}}),
		}}}},
		"text": {Format: &corev3.SubstitutionFormatString_TextFormatSource{TextFormatSource: &corev3.DataSource{
			Specifier: &corev3.DataSource_InlineString{InlineString: "%RESPONSE_CODE% %LOCAL_REPLY_BODY%\n"},
		}}},
	} {
		_, err := buildAccessLogFormat(&streamv3.StdoutAccessLog{AccessLogFormat: &streamv3.StdoutAccessLog_LogFormat{LogFormat: lf}})
		if !errors.Is(err, errLocalReplyBodyInAccessLog) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}

// A processor writes dynamic metadata only in the namespaces its filter
// lists; fields of a namespace merge.
func TestExtProcDynamicMetadataNamespaces(t *testing.T) {
	s := &stream{dp: &DataPlane{log: slog.New(slog.DiscardHandler)}}
	e := &extProcStream{s: s, cfg: &extProcConfig{name: "ep", receivingNamespaces: []string{"tollgate"}}}
	str := func(kv ...string) *structpb.Value {
		f := map[string]*structpb.Value{}
		for i := 0; i < len(kv); i += 2 {
			f[kv[i]] = structpb.NewStringValue(kv[i+1])
		}
		return structpb.NewStructValue(&structpb.Struct{Fields: f})
	}
	e.receiveMetadata(&structpb.Struct{Fields: map[string]*structpb.Value{"tollgate": str("a", "1"), "other": str("b", "2")}})
	e.receiveMetadata(&structpb.Struct{Fields: map[string]*structpb.Value{"tollgate": str("c", "3")}})
	for _, tc := range []struct {
		ns, key, want string
		ok            bool
	}{{"tollgate", "a", "1", true}, {"tollgate", "c", "3", true}, {"other", "b", "", false}} {
		v, ok := s.dynamicMetadata(tc.ns, []string{tc.key})
		if ok != tc.ok || v.GetStringValue() != tc.want {
			t.Errorf("%s.%s = %v (%v), want %q (%v)", tc.ns, tc.key, v, ok, tc.want, tc.ok)
		}
	}
}
