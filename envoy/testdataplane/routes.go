package testdataplane

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	previouspriorities "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/priority/previous_priorities/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

// Router defaults (route_components.proto).
const (
	defaultRouteTimeout     = 15 * time.Second
	defaultRetryBaseBackOff = 25 * time.Millisecond
	previousPrioritiesName  = "envoy.retry_priorities.previous_priorities"
)

// routeTable is a RouteConfiguration as the harness runs it.
type routeTable struct {
	name                    string
	vhosts                  []*virtualHost
	internalOnlyHeaders     []string
	responseHeadersToRemove []string
}

type virtualHost struct {
	name    string
	domains []string
	routes  []*route
}

type route struct {
	name    string
	prefix  string
	path    string
	hasPath bool
	regex   *regexp.Regexp
	headers []headerMatcher

	// A route either forwards to a cluster or answers directly.
	cluster            string
	timeout            time.Duration // 0: none
	idleTimeout        time.Duration
	hasIdleTimeout     bool
	autoHostRewrite    bool
	hostRewriteLiteral string
	prefixRewrite      string
	hasPrefixRewrite   bool
	retry              *retryPolicy
	direct             *directResponse

	requestHeadersToAdd     []headerOption
	requestHeadersToRemove  []string
	responseHeadersToAdd    []headerOption
	responseHeadersToRemove []string
}

type directResponse struct {
	status int
	body   string
}

type headerOption struct {
	key, value string
	action     corev3.HeaderValueOption_HeaderAppendAction
}

type headerMatcher struct {
	name                string
	presentType         bool // present_match, or no specifier at all
	present             bool
	str                 *stringMatcher
	invert              bool
	treatMissingAsEmpty bool
}

type stringMatcher struct {
	kind       string // exact, prefix, suffix, contains, regex
	value      string
	re         *regexp.Regexp
	ignoreCase bool
}

// retryPolicy is a route's RetryPolicy.
type retryPolicy struct {
	on                 map[string]bool
	numRetries         int
	perTryTimeout      time.Duration
	perTryIdleTimeout  time.Duration
	retriableCodes     []int
	baseInterval       time.Duration
	maxInterval        time.Duration
	previousPriorities uint32 // update frequency; 0: no retry priority
}

// retryOnModelled are the retry_on conditions the harness implements.
var retryOnModelled = []string{"5xx", "gateway-error", "reset", "connect-failure", "refused-stream", "retriable-4xx", "retriable-status-codes"}

func buildRouteTable(rc *routev3.RouteConfiguration) (*routeTable, error) {
	var errs []error
	out := &routeTable{
		name:                    rc.GetName(),
		internalOnlyHeaders:     lowerAll(rc.GetInternalOnlyHeaders()),
		responseHeadersToRemove: lowerAll(rc.GetResponseHeadersToRemove()),
	}
	for _, vh := range rc.GetVirtualHosts() {
		v := &virtualHost{name: vh.GetName(), domains: lowerAll(vh.GetDomains())}
		if len(v.domains) == 0 {
			errs = append(errs, fmt.Errorf("virtual host %q has no domains", vh.GetName()))
		}
		for i, r := range vh.GetRoutes() {
			rt, err := buildRoute(r)
			if err != nil {
				errs = append(errs, fmt.Errorf("virtual host %q route %d (%q): %w", vh.GetName(), i, r.GetName(), err))
				continue
			}
			v.routes = append(v.routes, rt)
		}
		out.vhosts = append(out.vhosts, v)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("route configuration %q: %w", rc.GetName(), err)
	}
	return out, nil
}

func buildRoute(r *routev3.Route) (*route, error) {
	var errs []error
	out := &route{
		name:                    r.GetName(),
		requestHeadersToRemove:  lowerAll(r.GetRequestHeadersToRemove()),
		responseHeadersToRemove: lowerAll(r.GetResponseHeadersToRemove()),
	}
	m := r.GetMatch()
	switch ps := m.GetPathSpecifier().(type) {
	case *routev3.RouteMatch_Prefix:
		out.prefix = ps.Prefix
	case *routev3.RouteMatch_Path:
		out.path, out.hasPath = ps.Path, true
	case *routev3.RouteMatch_SafeRegex:
		re, err := regexp.Compile("^(?:" + ps.SafeRegex.GetRegex() + ")$")
		if err != nil {
			errs = append(errs, fmt.Errorf("safe_regex: %w", err))
		}
		out.regex = re
	default:
		errs = append(errs, errors.New("route match needs prefix, path or safe_regex"))
	}
	for _, h := range m.GetHeaders() {
		hm, err := buildHeaderMatcher(h)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out.headers = append(out.headers, hm)
	}
	var err error
	if out.requestHeadersToAdd, err = buildHeaderOptions(r.GetRequestHeadersToAdd()); err != nil {
		errs = append(errs, err)
	}
	if out.responseHeadersToAdd, err = buildHeaderOptions(r.GetResponseHeadersToAdd()); err != nil {
		errs = append(errs, err)
	}
	switch a := r.GetAction().(type) {
	case *routev3.Route_Route:
		ra := a.Route
		out.cluster = ra.GetCluster()
		if out.cluster == "" {
			errs = append(errs, errors.New("route action needs a cluster (weighted_clusters and cluster_header are not modelled)"))
		}
		out.timeout = defaultRouteTimeout
		if ra.GetTimeout() != nil {
			out.timeout = ra.GetTimeout().AsDuration()
		}
		if ra.GetIdleTimeout() != nil {
			out.idleTimeout, out.hasIdleTimeout = ra.GetIdleTimeout().AsDuration(), true
		}
		out.autoHostRewrite = ra.GetAutoHostRewrite().GetValue()
		out.hostRewriteLiteral = ra.GetHostRewriteLiteral()
		if ra.GetPrefixRewrite() != "" {
			out.prefixRewrite, out.hasPrefixRewrite = ra.GetPrefixRewrite(), true
		}
		if rp := ra.GetRetryPolicy(); rp != nil {
			p, err := buildRetryPolicy(rp)
			if err != nil {
				errs = append(errs, err)
			}
			out.retry = p
		}
	case *routev3.Route_DirectResponse:
		out.direct = &directResponse{status: int(a.DirectResponse.GetStatus()), body: a.DirectResponse.GetBody().GetInlineString()}
		if out.direct.status < 200 || out.direct.status > 599 {
			errs = append(errs, fmt.Errorf("direct_response status %d is out of range", out.direct.status))
		}
	default:
		errs = append(errs, errors.New("route needs a route or direct_response action (redirect and filter_action are not modelled)"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

func buildHeaderMatcher(h *routev3.HeaderMatcher) (headerMatcher, error) {
	out := headerMatcher{
		name:                strings.ToLower(h.GetName()),
		invert:              h.GetInvertMatch(),
		treatMissingAsEmpty: h.GetTreatMissingHeaderAsEmpty(),
	}
	switch s := h.GetHeaderMatchSpecifier().(type) {
	case nil:
		out.presentType, out.present = true, true
	case *routev3.HeaderMatcher_PresentMatch:
		out.presentType, out.present = true, s.PresentMatch
	case *routev3.HeaderMatcher_StringMatch:
		sm, err := buildStringMatcher(s.StringMatch)
		if err != nil {
			return out, fmt.Errorf("header %q: %w", h.GetName(), err)
		}
		out.str = sm
	default:
		return out, fmt.Errorf("header %q: matcher %T is not modelled", h.GetName(), s)
	}
	return out, nil
}

func buildStringMatcher(m *matcherv3.StringMatcher) (*stringMatcher, error) {
	out := &stringMatcher{ignoreCase: m.GetIgnoreCase()}
	switch p := m.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		out.kind, out.value = "exact", p.Exact
	case *matcherv3.StringMatcher_Prefix:
		out.kind, out.value = "prefix", p.Prefix
	case *matcherv3.StringMatcher_Suffix:
		out.kind, out.value = "suffix", p.Suffix
	case *matcherv3.StringMatcher_Contains:
		out.kind, out.value = "contains", p.Contains
	case *matcherv3.StringMatcher_SafeRegex:
		re, err := regexp.Compile("^(?:" + p.SafeRegex.GetRegex() + ")$")
		if err != nil {
			return nil, err
		}
		out.kind, out.re = "regex", re
	default:
		return nil, fmt.Errorf("string matcher %T is not modelled", p)
	}
	if out.ignoreCase {
		out.value = strings.ToLower(out.value)
	}
	return out, nil
}

func (s *stringMatcher) match(v string) bool {
	if s.kind == "regex" {
		return s.re.MatchString(v)
	}
	if s.ignoreCase {
		v = strings.ToLower(v)
	}
	switch s.kind {
	case "exact":
		return v == s.value
	case "prefix":
		return strings.HasPrefix(v, s.value)
	case "suffix":
		return strings.HasSuffix(v, s.value)
	case "contains":
		return strings.Contains(v, s.value)
	}
	return false
}

func buildHeaderOptions(opts []*corev3.HeaderValueOption) ([]headerOption, error) {
	var out []headerOption
	for _, o := range opts {
		v := o.GetHeader().GetValue()
		if strings.Contains(v, "%") {
			// Header values are substitution formats in Envoy; the harness
			// adds literal values only.
			return nil, fmt.Errorf("header %q: value %q uses a substitution format, which is not modelled", o.GetHeader().GetKey(), v)
		}
		out = append(out, headerOption{key: strings.ToLower(o.GetHeader().GetKey()), value: v, action: o.GetAppendAction()})
	}
	return out, nil
}

// applyHeaderOptions applies headers_to_add with each option's append_action.
func applyHeaderOptions(h *headerMap, opts []headerOption) {
	for _, o := range opts {
		switch o.action {
		case corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD:
			h.add(o.key, o.value)
		case corev3.HeaderValueOption_ADD_IF_ABSENT:
			if !h.has(o.key) {
				h.add(o.key, o.value)
			}
		case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD:
			h.set(o.key, o.value)
		case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
			if h.has(o.key) {
				h.set(o.key, o.value)
			}
		}
	}
}

func buildRetryPolicy(rp *routev3.RetryPolicy) (*retryPolicy, error) {
	var errs []error
	out := &retryPolicy{on: map[string]bool{}, numRetries: 1, baseInterval: defaultRetryBaseBackOff}
	for _, tok := range strings.Split(rp.GetRetryOn(), ",") {
		tok = strings.TrimSpace(tok)
		if tok == "" {
			continue
		}
		if !slices.Contains(retryOnModelled, tok) {
			errs = append(errs, fmt.Errorf("retry_on %q is not modelled (modelled: %s)", tok, strings.Join(retryOnModelled, ",")))
			continue
		}
		out.on[tok] = true
	}
	if rp.GetNumRetries() != nil {
		out.numRetries = int(rp.GetNumRetries().GetValue())
	}
	if rp.GetPerTryTimeout() != nil {
		out.perTryTimeout = rp.GetPerTryTimeout().AsDuration()
	}
	if rp.GetPerTryIdleTimeout() != nil {
		out.perTryIdleTimeout = rp.GetPerTryIdleTimeout().AsDuration()
	}
	for _, c := range rp.GetRetriableStatusCodes() {
		out.retriableCodes = append(out.retriableCodes, int(c))
	}
	if bo := rp.GetRetryBackOff(); bo != nil {
		out.baseInterval = bo.GetBaseInterval().AsDuration()
		if out.baseInterval <= 0 {
			errs = append(errs, errors.New("retry_back_off.base_interval must be positive"))
		}
		if bo.GetMaxInterval() != nil {
			out.maxInterval = bo.GetMaxInterval().AsDuration()
			if out.maxInterval < out.baseInterval {
				errs = append(errs, errors.New("retry_back_off.max_interval must not be below base_interval"))
			}
		}
	}
	if out.maxInterval == 0 {
		out.maxInterval = 10 * out.baseInterval
	}
	if p := rp.GetRetryPriority(); p != nil {
		cfg := &previouspriorities.PreviousPrioritiesConfig{}
		if p.GetName() != previousPrioritiesName {
			errs = append(errs, fmt.Errorf("retry priority %q is not modelled", p.GetName()))
		} else if err := p.GetTypedConfig().UnmarshalTo(cfg); err != nil {
			errs = append(errs, fmt.Errorf("retry priority: %w", err))
		} else if cfg.GetUpdateFrequency() <= 0 {
			errs = append(errs, errors.New("previous_priorities update_frequency must be positive"))
		}
		out.previousPriorities = uint32(cfg.GetUpdateFrequency())
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// selectVirtualHost picks the virtual host for an :authority, in Envoy's
// order: exact, then the longest "*.suffix", then the longest "prefix.*",
// then "*".
func (t *routeTable) selectVirtualHost(authority string) *virtualHost {
	host := strings.ToLower(authority)
	type cand struct {
		vh  *virtualHost
		len int
	}
	var suffix, prefix []cand
	var star *virtualHost
	for _, vh := range t.vhosts {
		for _, d := range vh.domains {
			switch {
			case d == "*":
				if star == nil {
					star = vh
				}
			case d == host:
				return vh
			case strings.HasPrefix(d, "*") && strings.HasSuffix(host, d[1:]) && len(host) > len(d)-1:
				suffix = append(suffix, cand{vh, len(d)})
			case strings.HasSuffix(d, "*") && strings.HasPrefix(host, d[:len(d)-1]) && len(host) > len(d)-1:
				prefix = append(prefix, cand{vh, len(d)})
			}
		}
	}
	for _, cs := range [][]cand{suffix, prefix} {
		if len(cs) > 0 {
			sort.SliceStable(cs, func(i, j int) bool { return cs[i].len > cs[j].len })
			return cs[0].vh
		}
	}
	return star
}

// match returns the first route of the matching virtual host, or nil.
func (t *routeTable) match(h *headerMap) *route {
	vh := t.selectVirtualHost(h.value(":authority"))
	if vh == nil {
		return nil
	}
	for _, r := range vh.routes {
		if r.matches(h) {
			return r
		}
	}
	return nil
}

func (r *route) matches(h *headerMap) bool {
	full := h.value(":path")
	path, _, _ := strings.Cut(full, "?")
	path, _, _ = strings.Cut(path, "#")
	switch {
	case r.regex != nil:
		if !r.regex.MatchString(path) {
			return false
		}
	case r.hasPath:
		if path != r.path {
			return false
		}
	default:
		// Prefix matching sees the whole :path, query included, as Envoy's
		// does.
		if !strings.HasPrefix(full, r.prefix) {
			return false
		}
	}
	for _, m := range r.headers {
		if !m.matches(h) {
			return false
		}
	}
	return true
}

// matches follows Envoy's HeaderUtility::matchHeaders, missing-header cases
// included.
func (m headerMatcher) matches(h *headerMap) bool {
	v, ok := h.joined(m.name)
	if !ok && !m.treatMissingAsEmpty {
		if m.invert {
			return !m.presentType
		}
		return m.presentType && !m.present
	}
	var res bool
	if m.presentType {
		res = m.present // the header is there (or treated as empty)
	} else {
		res = m.str.match(v)
	}
	return res != m.invert
}

func lowerAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strings.ToLower(s)
	}
	return out
}
