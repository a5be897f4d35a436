package testdataplane

import (
	"errors"
	"fmt"
	"strings"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// localReplyMapper is one of the HCM's local_reply_config mappers: a filter
// on the reply and the request, and the body format the reply then gets.
// Envoy also lets a mapper set a status, a static body and headers; those
// are not modelled.
type localReplyMapper struct {
	filter replyFilter
	format *accessLogFormat
}

// replyFilter is an AccessLogFilter evaluated against a local reply.
type replyFilter func(r *replyFacts) bool

// replyFacts is what a mapper's filter sees: the reply's status, the
// stream's response flags, the request headers (as filters left them: an
// upstream filter's changes included), and the stream's dynamic metadata.
type replyFacts struct {
	status int
	flags  map[string]bool
	req    *headerMap
	meta   func(ns string, path []string) (*structpb.Value, bool)
}

func buildLocalReplyConfig(c *hcmv3.LocalReplyConfig) ([]*localReplyMapper, error) {
	if c == nil {
		return nil, nil
	}
	if c.GetBodyFormat() != nil {
		return nil, errors.New("local_reply_config.body_format is not modelled")
	}
	var errs []error
	var out []*localReplyMapper
	for i, m := range c.GetMappers() {
		f, err := buildReplyFilter(m.GetFilter())
		if err != nil {
			errs = append(errs, fmt.Errorf("local_reply_config.mappers[%d].filter: %w", i, err))
			continue
		}
		bf := m.GetBodyFormatOverride()
		if bf.GetJsonFormat() == nil {
			errs = append(errs, fmt.Errorf("local_reply_config.mappers[%d]: only body_format_override.json_format is modelled", i))
			continue
		}
		j, err := parseJSONFormat(bf.GetJsonFormat())
		if err != nil {
			errs = append(errs, fmt.Errorf("local_reply_config.mappers[%d].body_format_override: %w", i, err))
			continue
		}
		out = append(out, &localReplyMapper{filter: f, format: &accessLogFormat{json: j}})
	}
	return out, errors.Join(errs...)
}

func buildReplyFilter(f *accesslogv3.AccessLogFilter) (replyFilter, error) {
	switch {
	case f.GetStatusCodeFilter() != nil:
		c := f.GetStatusCodeFilter().GetComparison()
		// The runtime key is required by Envoy; no runtime is modelled, so
		// the default value applies, as it does in an Envoy whose runtime
		// does not set the key.
		v := int(c.GetValue().GetDefaultValue())
		switch c.GetOp() {
		case accesslogv3.ComparisonFilter_EQ:
			return func(r *replyFacts) bool { return r.status == v }, nil
		case accesslogv3.ComparisonFilter_GE:
			return func(r *replyFacts) bool { return r.status >= v }, nil
		case accesslogv3.ComparisonFilter_LE:
			return func(r *replyFacts) bool { return r.status <= v }, nil
		}
		return nil, fmt.Errorf("comparison op %v is not modelled", c.GetOp())
	case f.GetResponseFlagFilter() != nil:
		flags := f.GetResponseFlagFilter().GetFlags()
		return func(r *replyFacts) bool {
			if len(flags) == 0 { // Envoy: no flags listed matches any flag
				return len(r.flags) > 0
			}
			for _, fl := range flags {
				if r.flags[fl] {
					return true
				}
			}
			return false
		}, nil
	case f.GetHeaderFilter() != nil:
		h := f.GetHeaderFilter().GetHeader()
		name := strings.ToLower(h.GetName())
		sm := h.GetStringMatch()
		var match func(string) bool
		switch {
		case sm.GetPrefix() != "":
			p := sm.GetPrefix()
			match = func(v string) bool { return strings.HasPrefix(v, p) }
		case sm.GetExact() != "":
			x := sm.GetExact()
			match = func(v string) bool { return v == x }
		default:
			return nil, errors.New("header_filter: only string_match prefix and exact are modelled")
		}
		if sm.GetIgnoreCase() {
			return nil, errors.New("header_filter: ignore_case is not modelled")
		}
		return func(r *replyFacts) bool {
			v, ok := r.req.joined(name)
			return ok && match(v)
		}, nil
	case f.GetMetadataFilter() != nil:
		mf := f.GetMetadataFilter()
		m := mf.GetMatcher()
		var path []string
		for _, seg := range m.GetPath() {
			path = append(path, seg.GetKey())
		}
		want := m.GetValue().GetStringMatch().GetExact()
		if want == "" {
			return nil, errors.New("metadata_filter: only a value string_match exact is modelled")
		}
		// Envoy: a filter without a matcher matches everything; a key
		// that is not found matches unless match_if_key_not_found is false.
		ifMissing := mf.GetMatchIfKeyNotFound() == nil || mf.GetMatchIfKeyNotFound().GetValue()
		return func(r *replyFacts) bool {
			v, ok := r.meta(m.GetFilter(), path)
			if !ok {
				return ifMissing
			}
			sv, isString := v.GetKind().(*structpb.Value_StringValue)
			return isString && sv.StringValue == want
		}, nil
	case f.GetAndFilter() != nil:
		var fs []replyFilter
		for i, sub := range f.GetAndFilter().GetFilters() {
			sf, err := buildReplyFilter(sub)
			if err != nil {
				return nil, fmt.Errorf("and_filter.filters[%d]: %w", i, err)
			}
			fs = append(fs, sf)
		}
		return func(r *replyFacts) bool {
			for _, sf := range fs {
				if !sf(r) {
					return false
				}
			}
			return true
		}, nil
	}
	return nil, errors.New("only status_code_filter, response_flag_filter, header_filter, metadata_filter and and_filter are modelled")
}

// mapLocalReply applies the first mapper whose filter matches: the reply's
// body becomes the mapper's JSON format rendered with the original body as
// %LOCAL_REPLY_BODY%, and its content type application/json. Without a
// match the reply is unchanged (no body_format is modelled).
func (s *stream) mapLocalReply(lr *localReply) (body, contentType string, mapped bool) {
	facts := &replyFacts{status: lr.status, flags: s.flags, req: s.req, meta: s.dynamicMetadata}
	for _, m := range s.hcm.localReplyMappers {
		if !m.filter(facts) {
			continue
		}
		e := s.logEntry()
		e.responseCode = lr.status
		e.details = lr.details
		e.localReplyBody = lr.body
		return string(m.format.line(e)), "application/json", true
	}
	return "", "", false
}
