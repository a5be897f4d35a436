package testdataplane

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	upstreamcodecv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/upstream_codec/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	previouspriorities "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/priority/previous_priorities/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// The typed_config types the harness implements. Anything else in an Any is
// refused.
var (
	typeHCM                = typeURLOf(&hcmv3.HttpConnectionManager{})
	typeExtProc            = typeURLOf(&extprocv3.ExternalProcessor{})
	typeRouter             = typeURLOf(&routerv3.Router{})
	typeUpstreamCodec      = typeURLOf(&upstreamcodecv3.UpstreamCodec{})
	typeHTTPProtocolOpts   = typeURLOf(&httpv3.HttpProtocolOptions{})
	typeUpstreamTLS        = typeURLOf(&tlsv3.UpstreamTlsContext{})
	typeStdoutAccessLog    = typeURLOf(&streamv3.StdoutAccessLog{})
	typePreviousPriorities = typeURLOf(&previouspriorities.PreviousPrioritiesConfig{})
)

func typeURLOf(m proto.Message) string {
	return "type.googleapis.com/" + string(m.ProtoReflect().Descriptor().FullName())
}

func fullName(m proto.Message) protoreflect.FullName { return m.ProtoReflect().Descriptor().FullName() }

// rule says how one field path may be used.
type rule struct {
	// enums lists the enum value names that are modelled; an enum field
	// needs them.
	enums []string
	// anyTypes lists the type URLs an Any (or a map of Any) may hold; the
	// contained message is then checked against its own type's table.
	anyTypes []string
	// nested means the field's message type has its own table (a Cluster
	// inside the bootstrap), and is checked against it.
	nested bool
	// anyEnum accepts every value of an enum whose values are data, not
	// behaviour (an HTTP status code).
	anyEnum bool
}

// Helpers that keep the tables below readable.
var (
	leaf = rule{}
)

func enums(names ...string) rule { return rule{enums: names} }
func anyOf(urls ...string) rule  { return rule{anyTypes: urls} }
func nestedTable() rule          { return rule{nested: true} }
func paths(prefix string, rs map[string]rule) map[string]rule {
	out := make(map[string]rule, len(rs))
	for p, r := range rs {
		out[prefix+p] = r
	}
	return out
}

func merge(ms ...map[string]rule) map[string]rule {
	out := map[string]rule{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

// replyFilterRules are the AccessLogFilter fields a local reply mapper's
// filter may use (localreply.go), at its top and inside one and_filter.
var replyFilterRules = map[string]rule{
	"status_code_filter.comparison.op":                  enums("EQ", "GE", "LE"),
	"status_code_filter.comparison.value.default_value": leaf,
	"status_code_filter.comparison.value.runtime_key":   leaf,
	"response_flag_filter.flags":                        leaf,
	"header_filter.header.name":                         leaf,
	"header_filter.header.string_match.prefix":          leaf,
	"header_filter.header.string_match.exact":           leaf,
	"metadata_filter.matcher.filter":                    leaf,
	"metadata_filter.matcher.path.key":                  leaf,
	"metadata_filter.matcher.value.string_match.exact":  leaf,
	"metadata_filter.match_if_key_not_found":            leaf,
}

// modelled is the allow-list: for every message type the harness accepts at
// the top of a resource (or inside an Any), the field paths it implements.
// A path is the dotted proto field names from that message; repeated and map
// fields have no index. Well-known types (Duration, wrappers, Struct) are
// leaves. A message field that is not listed itself is allowed only as the
// way to the listed fields below it.
//
// Adding a path here is a promise that the harness behaves as Envoy does for
// it: add the behaviour (and a test) in the same change.
var modelled = map[protoreflect.FullName]map[string]rule{
	// Envoy's bootstrap: what the harness reads to find the control plane
	// and the ext_proc sidecar.
	fullName(&bootstrapv3.Bootstrap{}): {
		"node.id":      leaf,
		"node.cluster": leaf,
		// Data for the control plane, sent with the node on the ADS
		// stream; Envoy itself ignores it, and so does the harness.
		"node.metadata": leaf,
		// The harness serves /ready on the admin address (nothing else).
		"admin.address.socket_address.address":                               leaf,
		"admin.address.socket_address.port_value":                            leaf,
		"dynamic_resources.ads_config.api_type":                              enums("GRPC"),
		"dynamic_resources.ads_config.transport_api_version":                 enums("V3"),
		"dynamic_resources.ads_config.set_node_on_first_message_only":        leaf,
		"dynamic_resources.ads_config.grpc_services.envoy_grpc.cluster_name": leaf,
		"dynamic_resources.cds_config.ads":                                   leaf,
		"dynamic_resources.cds_config.resource_api_version":                  enums("V3"),
		"dynamic_resources.lds_config.ads":                                   leaf,
		"dynamic_resources.lds_config.resource_api_version":                  enums("V3"),
		"static_resources.clusters":                                          nestedTable(),
	},

	fullName(&listenerv3.Listener{}): {
		"name":                               leaf,
		"address.socket_address.address":     leaf,
		"address.socket_address.port_value":  leaf,
		"per_connection_buffer_limit_bytes":  leaf,
		"filter_chains.filters.name":         leaf,
		"filter_chains.filters.typed_config": anyOf(typeHCM),
	},

	fullName(&hcmv3.HttpConnectionManager{}): merge(
		paths("local_reply_config.mappers.filter.", replyFilterRules),
		paths("local_reply_config.mappers.filter.and_filter.filters.", replyFilterRules),
		map[string]rule{
			// Stats are not modelled, so a stat prefix has nothing to change.
			"stat_prefix":                            leaf,
			"codec_type":                             enums("AUTO", "HTTP1"),
			"rds.route_config_name":                  leaf,
			"rds.config_source.ads":                  leaf,
			"rds.config_source.resource_api_version": enums("V3"),
			"http_filters.name":                      leaf,
			"http_filters.typed_config":              anyOf(typeExtProc, typeRouter),
			"generate_request_id":                    leaf,
			"preserve_external_request_id":           leaf,
			"always_set_request_id_in_response":      leaf,
			"use_remote_address":                     leaf,
			"xff_num_trusted_hops":                   leaf,
			"skip_xff_append":                        leaf,
			"stream_idle_timeout":                    leaf,
			"normalize_path":                         leaf,
			"merge_slashes":                          leaf,
			"server_name":                            leaf,
			"access_log.name":                        leaf,
			"access_log.typed_config":                anyOf(typeStdoutAccessLog),
			"local_reply_config.mappers.body_format_override.json_format": leaf,
		}),

	fullName(&streamv3.StdoutAccessLog{}): {
		"log_format.json_format":                      leaf,
		"log_format.text_format_source.inline_string": leaf,
	},

	fullName(&routerv3.Router{}): {
		"suppress_envoy_headers": leaf,
	},

	fullName(&upstreamcodecv3.UpstreamCodec{}): {},

	fullName(&extprocv3.ExternalProcessor{}): merge(
		map[string]rule{
			"grpc_service.envoy_grpc.cluster_name":          leaf,
			"failure_mode_allow":                            leaf,
			"allow_mode_override":                           leaf,
			"message_timeout":                               leaf,
			"max_message_timeout":                           leaf,
			"request_attributes":                            leaf, // each expression is checked when built
			"disable_immediate_response":                    leaf,
			"disable_clear_route_cache":                     leaf,
			"route_cache_action":                            enums("DEFAULT", "CLEAR", "RETAIN"),
			"status_on_error.code":                          {anyEnum: true},
			"metadata_options.receiving_namespaces.untyped": leaf,
		},
		paths("processing_mode.", processingModeRules),
		paths("allowed_override_modes.", processingModeRules),
	),

	fullName(&previouspriorities.PreviousPrioritiesConfig{}): {
		"update_frequency": leaf,
	},

	fullName(&routev3.RouteConfiguration{}): merge(
		map[string]rule{
			"name":                       leaf,
			"internal_only_headers":      leaf,
			"response_headers_to_remove": leaf,
			"virtual_hosts.name":         leaf,
			"virtual_hosts.domains":      leaf,
		},
		paths("virtual_hosts.routes.", routeRules),
	),

	fullName(&clusterv3.Cluster{}): merge(
		map[string]rule{
			"name":              leaf,
			"type":              enums("STATIC", "STRICT_DNS"),
			"connect_timeout":   leaf,
			"dns_lookup_family": enums("AUTO", "V4_ONLY", "V6_ONLY", "V4_PREFERRED", "ALL"),
			"respect_dns_ttl":   leaf,
			"lb_policy":         enums("ROUND_ROBIN"),
			"common_lb_config.locality_weighted_lb_config":            leaf,
			"load_assignment.cluster_name":                            leaf,
			"transport_socket.name":                                   leaf,
			"transport_socket.typed_config":                           anyOf(typeUpstreamTLS),
			"transport_socket_matches.name":                           leaf,
			"transport_socket_matches.match":                          leaf,
			"transport_socket_matches.transport_socket.name":          leaf,
			"transport_socket_matches.transport_socket.typed_config":  anyOf(typeUpstreamTLS),
			"typed_extension_protocol_options":                        anyOf(typeHTTPProtocolOpts),
			"circuit_breakers.thresholds.priority":                    enums("DEFAULT"),
			"circuit_breakers.thresholds.max_connections":             leaf,
			"circuit_breakers.thresholds.max_pending_requests":        leaf,
			"circuit_breakers.thresholds.max_requests":                leaf,
			"circuit_breakers.thresholds.max_retries":                 leaf,
			"outlier_detection.consecutive_5xx":                       leaf,
			"outlier_detection.consecutive_gateway_failure":           leaf,
			"outlier_detection.enforcing_consecutive_5xx":             leaf,
			"outlier_detection.enforcing_consecutive_gateway_failure": leaf,
			"outlier_detection.interval":                              leaf,
			"outlier_detection.base_ejection_time":                    leaf,
			"outlier_detection.max_ejection_time":                     leaf,
			"outlier_detection.max_ejection_percent":                  leaf,
		},
		paths("load_assignment.endpoints.", map[string]rule{
			"locality.region":       leaf,
			"locality.zone":         leaf,
			"locality.sub_zone":     leaf,
			"priority":              leaf,
			"load_balancing_weight": leaf,
			"lb_endpoints.endpoint.address.socket_address.address":    leaf,
			"lb_endpoints.endpoint.address.socket_address.port_value": leaf,
			"lb_endpoints.endpoint.address.pipe.path":                 leaf,
			"lb_endpoints.endpoint.hostname":                          leaf,
			"lb_endpoints.metadata.filter_metadata":                   leaf,
			"lb_endpoints.load_balancing_weight":                      leaf,
		}),
	),

	fullName(&httpv3.HttpProtocolOptions{}): {
		"explicit_http_config.http_protocol_options":                                leaf,
		"explicit_http_config.http2_protocol_options":                               leaf,
		"explicit_http_config.http2_protocol_options.connection_keepalive.interval": leaf,
		"explicit_http_config.http2_protocol_options.connection_keepalive.timeout":  leaf,
		"auto_config.http_protocol_options":                                         leaf,
		"auto_config.http2_protocol_options":                                        leaf,
		"http_filters.name":                                                         leaf,
		"http_filters.typed_config":                                                 anyOf(typeExtProc, typeUpstreamCodec),
	},

	fullName(&tlsv3.UpstreamTlsContext{}): paths("", map[string]rule{
		"sni":                               leaf,
		"common_tls_context.alpn_protocols": leaf,
		"common_tls_context.validation_context.match_typed_subject_alt_names.san_type":      enums("DNS"),
		"common_tls_context.validation_context.match_typed_subject_alt_names.matcher.exact": leaf,
		"common_tls_context.validation_context.system_root_certs":                           leaf,
		"common_tls_context.validation_context.trusted_ca.filename":                         leaf,
		"common_tls_context.validation_context.trusted_ca.inline_string":                    leaf,
		"common_tls_context.tls_certificates.certificate_chain.filename":                    leaf,
		"common_tls_context.tls_certificates.private_key.filename":                          leaf,
	}),
}

var processingModeRules = map[string]rule{
	"request_header_mode":  enums("DEFAULT", "SEND", "SKIP"),
	"response_header_mode": enums("DEFAULT", "SEND", "SKIP"),
	// Trailers are not modelled: SEND would promise messages the harness
	// never sends.
	"request_trailer_mode":  enums("DEFAULT", "SKIP"),
	"response_trailer_mode": enums("DEFAULT", "SKIP"),
	// FULL_DUPLEX_STREAMED and GRPC are not modelled.
	"request_body_mode":  enums("NONE", "STREAMED", "BUFFERED", "BUFFERED_PARTIAL"),
	"response_body_mode": enums("NONE", "STREAMED", "BUFFERED", "BUFFERED_PARTIAL"),
}

var headerValueOptionRules = map[string]rule{
	"header.key":    leaf,
	"header.value":  leaf,
	"append_action": enums("APPEND_IF_EXISTS_OR_ADD", "ADD_IF_ABSENT", "OVERWRITE_IF_EXISTS_OR_ADD", "OVERWRITE_IF_EXISTS"),
}

var routeRules = merge(
	map[string]rule{
		"name":                                            leaf,
		"match.prefix":                                    leaf,
		"match.path":                                      leaf,
		"match.safe_regex.regex":                          leaf,
		"match.headers.name":                              leaf,
		"match.headers.string_match.exact":                leaf,
		"match.headers.string_match.prefix":               leaf,
		"match.headers.string_match.suffix":               leaf,
		"match.headers.string_match.contains":             leaf,
		"match.headers.string_match.ignore_case":          leaf,
		"match.headers.string_match.safe_regex.regex":     leaf,
		"match.headers.present_match":                     leaf,
		"match.headers.invert_match":                      leaf,
		"match.headers.treat_missing_header_as_empty":     leaf,
		"route.cluster":                                   leaf,
		"route.timeout":                                   leaf,
		"route.idle_timeout":                              leaf,
		"route.auto_host_rewrite":                         leaf,
		"route.host_rewrite_literal":                      leaf,
		"route.prefix_rewrite":                            leaf,
		"route.retry_policy.retry_on":                     leaf,
		"route.retry_policy.num_retries":                  leaf,
		"route.retry_policy.per_try_timeout":              leaf,
		"route.retry_policy.per_try_idle_timeout":         leaf,
		"route.retry_policy.retriable_status_codes":       leaf,
		"route.retry_policy.retry_back_off.base_interval": leaf,
		"route.retry_policy.retry_back_off.max_interval":  leaf,
		"route.retry_policy.retry_priority.name":          leaf,
		"route.retry_policy.retry_priority.typed_config":  anyOf(typePreviousPriorities),
		"direct_response.status":                          leaf,
		"direct_response.body.inline_string":              leaf,
		"request_headers_to_remove":                       leaf,
		"response_headers_to_remove":                      leaf,
	},
	paths("request_headers_to_add.", headerValueOptionRules),
	paths("response_headers_to_add.", headerValueOptionRules),
)

// modelViolations walks m and returns one line per set field that the
// harness does not model, with its path in the resource.
func modelViolations(m proto.Message) []string {
	c := &modelChecker{}
	root := m.ProtoReflect()
	c.walk(root.Descriptor().FullName(), "", "", root)
	sort.Strings(c.out)
	return c.out
}

type modelChecker struct {
	out []string
}

// prefixesOf lists the paths that lead to allowed fields, per table.
var prefixesOf = func() map[protoreflect.FullName]map[string]bool {
	out := map[protoreflect.FullName]map[string]bool{}
	for name, rules := range modelled {
		ps := map[string]bool{}
		for p := range rules {
			parts := strings.Split(p, ".")
			for i := 1; i < len(parts); i++ {
				ps[strings.Join(parts[:i], ".")] = true
			}
		}
		out[name] = ps
	}
	return out
}()

func (c *modelChecker) fail(where, format string, args ...any) {
	if where == "" {
		where = "(resource)"
	}
	c.out = append(c.out, where+": "+fmt.Sprintf(format, args...))
}

// walk checks message m, found at display path where, against the table of
// root with field path prefix (relative to root).
func (c *modelChecker) walk(root protoreflect.FullName, prefix, where string, m protoreflect.Message) {
	rules, ok := modelled[root]
	if !ok {
		c.fail(where, "message type %s is not modelled by the test data plane", root)
		return
	}
	if unknown := m.GetUnknown(); len(unknown) > 0 {
		c.fail(where, "unknown field number(s) %v (a field this proto version does not know is never silently ignored)", fieldNumbers(unknown))
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		path := prefix + string(fd.Name())
		at := join(where, string(fd.Name()))
		r, listed := rules[path]
		// A message field that only leads to listed fields is allowed.
		onTheWay := fd.Kind() == protoreflect.MessageKind && prefixesOf[root][path] && !isLeafType(fd)
		if !listed && !onTheWay {
			c.fail(at, "field %s.%s is not modelled by the test data plane", root, path)
			return true
		}
		switch {
		case fd.IsMap():
			mv := v.Map()
			keys := make([]string, 0, mv.Len())
			mv.Range(func(k protoreflect.MapKey, _ protoreflect.Value) bool {
				keys = append(keys, k.String())
				return true
			})
			slices.Sort(keys)
			for _, k := range keys {
				item := mv.Get(protoreflect.ValueOfString(k).MapKey())
				c.value(root, path, at+"["+k+"]", r, listed, fd.MapValue(), item)
			}
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				c.value(root, path, fmt.Sprintf("%s[%d]", at, i), r, listed, fd, l.Get(i))
			}
		default:
			c.value(root, path, at, r, listed, fd, v)
		}
		return true
	})
}

// value checks one value of field fd (an element of a list or map, or the
// field itself).
func (c *modelChecker) value(root protoreflect.FullName, path, at string, r rule, listed bool, fd protoreflect.FieldDescriptor, v protoreflect.Value) {
	switch fd.Kind() {
	case protoreflect.EnumKind:
		name := string(fd.Enum().Values().ByNumber(v.Enum()).Name())
		if name == "" {
			name = fmt.Sprint(v.Enum())
		}
		if !r.anyEnum && !slices.Contains(r.enums, name) {
			c.fail(at, "value %s of %s.%s is not modelled by the test data plane (modelled: %s)", name, root, path, strings.Join(r.enums, ", "))
		}
	case protoreflect.MessageKind, protoreflect.GroupKind:
		msg := v.Message()
		md := msg.Descriptor()
		switch {
		case md.FullName() == "google.protobuf.Any":
			c.checkAny(root, path, at, r, msg)
		case isLeafMessage(md):
			// Durations, wrappers and Structs are values, not configuration
			// to descend into.
		case r.nested && listed:
			c.walk(md.FullName(), "", at, msg)
		default:
			c.walk(root, path+".", at, msg)
		}
	}
}

func (c *modelChecker) checkAny(root protoreflect.FullName, path, at string, r rule, msg protoreflect.Message) {
	a, ok := msg.Interface().(*anypb.Any)
	if !ok {
		c.fail(at, "malformed Any")
		return
	}
	if !slices.Contains(r.anyTypes, a.GetTypeUrl()) {
		c.fail(at, "typed_config type %s in %s.%s is not modelled by the test data plane", a.GetTypeUrl(), root, path)
		return
	}
	inner, err := a.UnmarshalNew()
	if err != nil {
		c.fail(at, "typed_config of type %s does not decode: %v", a.GetTypeUrl(), err)
		return
	}
	ir := inner.ProtoReflect()
	c.walk(ir.Descriptor().FullName(), "", at+"<"+string(ir.Descriptor().Name())+">", ir)
}

func isLeafType(fd protoreflect.FieldDescriptor) bool {
	return fd.Kind() == protoreflect.MessageKind && isLeafMessage(fd.Message())
}

func isLeafMessage(md protoreflect.MessageDescriptor) bool {
	return md.ParentFile().Package() == "google.protobuf" && md.FullName() != "google.protobuf.Any"
}

func join(where, name string) string {
	if where == "" {
		return name
	}
	return where + "." + name
}

// fieldNumbers lists the field numbers in a block of unknown fields.
func fieldNumbers(b []byte) []int32 {
	var out []int32
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			break
		}
		b = b[n:]
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			break
		}
		b = b[m:]
		out = append(out, int32(num))
	}
	return out
}

// checkModelled returns an error naming every unmodelled field of m.
func checkModelled(kind, name string, m proto.Message) error {
	v := modelViolations(m)
	if len(v) == 0 {
		return nil
	}
	return &unmodelledError{kind: kind, name: name, violations: v}
}

// unmodelledError is why a resource was refused.
type unmodelledError struct {
	kind, name string
	violations []string
}

func (e *unmodelledError) Error() string {
	return fmt.Sprintf("%s %q uses configuration the test data plane does not model (it would behave differently from Envoy, so it is refused): %s",
		e.kind, e.name, strings.Join(e.violations, "; "))
}
