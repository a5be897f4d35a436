package testdataplane

import (
	"errors"
	"fmt"
	"regexp"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	"google.golang.org/protobuf/proto"
)

// defaultMessageTimeout is ext_proc's message_timeout when unset
// (ENVOY-EXTPROC-NOTES §6).
const defaultMessageTimeout = 200 * time.Millisecond

// extProcConfig is one ext_proc filter, on a listener (downstream) or in a
// cluster's upstream filter chain.
type extProcConfig struct {
	name     string
	cluster  string
	upstream bool
	// mode is the configured processing mode, with DEFAULT resolved.
	mode                     *extprocv3.ProcessingMode
	failureModeAllow         bool
	allowModeOverride        bool
	allowedOverrideModes     []*extprocv3.ProcessingMode
	messageTimeout           time.Duration
	maxMessageTimeout        time.Duration
	requestAttributes        []celAttribute
	disableImmediateResponse bool
	routeCacheAction         extprocv3.ExternalProcessor_RouteCacheAction
	statusOnError            int
	// receivingNamespaces are the untyped dynamic metadata namespaces the
	// processor may write (metadata_options.receiving_namespaces).
	receivingNamespaces []string
}

// celAttribute is one request attribute: Envoy evaluates a CEL expression;
// the harness knows a fixed set of them and refuses the rest.
type celAttribute struct {
	expr string
	kind attributeKind
	// For host metadata: filter_metadata[ns][key].
	ns, key string
}

type attributeKind int

const (
	attrSourceAddress attributeKind = iota
	attrRequestPath
	attrRequestMethod
	attrRequestHost
	attrRequestID
	attrHostMetadata
)

var (
	simpleAttributes = map[string]attributeKind{
		"source.address": attrSourceAddress,
		"request.path":   attrRequestPath,
		"request.method": attrRequestMethod,
		"request.host":   attrRequestHost,
		"request.id":     attrRequestID,
	}
	// xds.upstream_host_metadata.filter_metadata['ns']['key'], the
	// attribute by which an upstream ext_proc learns the selected host.
	hostMetadataExpr = regexp.MustCompile(`^xds\.upstream_host_metadata\.filter_metadata\['([^']+)'\]\['([^']+)'\]$`)
)

func parseAttribute(expr string) (celAttribute, error) {
	if k, ok := simpleAttributes[expr]; ok {
		return celAttribute{expr: expr, kind: k}, nil
	}
	if m := hostMetadataExpr.FindStringSubmatch(expr); m != nil {
		return celAttribute{expr: expr, kind: attrHostMetadata, ns: m[1], key: m[2]}, nil
	}
	return celAttribute{}, fmt.Errorf("request attribute %q is not modelled (modelled: source.address, request.path, request.method, request.host, request.id, xds.upstream_host_metadata.filter_metadata['ns']['key'])", expr)
}

func buildExtProc(name string, c *extprocv3.ExternalProcessor, upstream bool) (*extProcConfig, error) {
	var errs []error
	out := &extProcConfig{
		name:                     name,
		cluster:                  c.GetGrpcService().GetEnvoyGrpc().GetClusterName(),
		upstream:                 upstream,
		mode:                     resolveMode(c.GetProcessingMode()),
		failureModeAllow:         c.GetFailureModeAllow(),
		allowModeOverride:        c.GetAllowModeOverride(),
		allowedOverrideModes:     c.GetAllowedOverrideModes(),
		messageTimeout:           defaultMessageTimeout,
		disableImmediateResponse: c.GetDisableImmediateResponse(),
		routeCacheAction:         c.GetRouteCacheAction(),
		statusOnError:            500,
	}
	if out.cluster == "" {
		errs = append(errs, errors.New("grpc_service must name a cluster with envoy_grpc"))
	}
	if c.GetMessageTimeout() != nil {
		out.messageTimeout = c.GetMessageTimeout().AsDuration()
	}
	if c.GetMaxMessageTimeout() != nil {
		out.maxMessageTimeout = c.GetMaxMessageTimeout().AsDuration()
	}
	if c.GetDisableClearRouteCache() {
		if out.routeCacheAction != extprocv3.ExternalProcessor_DEFAULT {
			// Envoy refuses this combination (ext_proc.cc FilterConfig).
			errs = append(errs, errors.New("disable_clear_route_cache and route_cache_action can not be set to non-default at the same time"))
		}
		out.routeCacheAction = extprocv3.ExternalProcessor_RETAIN
	}
	if s := c.GetStatusOnError(); s != nil {
		out.statusOnError = int(s.GetCode())
	}
	if ns := c.GetMetadataOptions().GetReceivingNamespaces(); ns != nil {
		if len(ns.GetTyped()) > 0 {
			errs = append(errs, errors.New("metadata_options.receiving_namespaces.typed: Envoy does not support receiving typed metadata"))
		}
		if upstream && len(ns.GetUntyped()) > 0 {
			// An upstream filter writes the try's stream info, which no
			// modelled consumer reads.
			errs = append(errs, errors.New("metadata_options.receiving_namespaces in an upstream filter is not modelled"))
		}
		out.receivingNamespaces = ns.GetUntyped()
	}
	for _, expr := range c.GetRequestAttributes() {
		a, err := parseAttribute(expr)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out.requestAttributes = append(out.requestAttributes, a)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// resolveMode fills in Envoy's defaults: headers SEND, body NONE, trailers
// SKIP.
func resolveMode(m *extprocv3.ProcessingMode) *extprocv3.ProcessingMode {
	out := &extprocv3.ProcessingMode{}
	if m != nil {
		out = proto.Clone(m).(*extprocv3.ProcessingMode)
	}
	if out.RequestHeaderMode == extprocv3.ProcessingMode_DEFAULT {
		out.RequestHeaderMode = extprocv3.ProcessingMode_SEND
	}
	if out.ResponseHeaderMode == extprocv3.ProcessingMode_DEFAULT {
		out.ResponseHeaderMode = extprocv3.ProcessingMode_SEND
	}
	if out.RequestTrailerMode == extprocv3.ProcessingMode_DEFAULT {
		out.RequestTrailerMode = extprocv3.ProcessingMode_SKIP
	}
	if out.ResponseTrailerMode == extprocv3.ProcessingMode_DEFAULT {
		out.ResponseTrailerMode = extprocv3.ProcessingMode_SKIP
	}
	return out
}

// overrideMode is the mode a mode_override in a headers reply results in,
// or false when Envoy ignores it (ENVOY-EXTPROC-NOTES §2): the filter-level
// mode with the override's non-DEFAULT header and trailer modes, and both
// body modes always replaced.
func (c *extProcConfig) overrideMode(o *extprocv3.ProcessingMode) (*extprocv3.ProcessingMode, bool) {
	res := proto.Clone(c.mode).(*extprocv3.ProcessingMode)
	if o.GetRequestHeaderMode() != extprocv3.ProcessingMode_DEFAULT {
		res.RequestHeaderMode = o.GetRequestHeaderMode()
	}
	if o.GetResponseHeaderMode() != extprocv3.ProcessingMode_DEFAULT {
		res.ResponseHeaderMode = o.GetResponseHeaderMode()
	}
	if o.GetRequestTrailerMode() != extprocv3.ProcessingMode_DEFAULT {
		res.RequestTrailerMode = o.GetRequestTrailerMode()
	}
	if o.GetResponseTrailerMode() != extprocv3.ProcessingMode_DEFAULT {
		res.ResponseTrailerMode = o.GetResponseTrailerMode()
	}
	res.RequestBodyMode = o.GetRequestBodyMode()
	res.ResponseBodyMode = o.GetResponseBodyMode()
	for _, b := range []extprocv3.ProcessingMode_BodySendMode{res.RequestBodyMode, res.ResponseBodyMode} {
		if b == extprocv3.ProcessingMode_FULL_DUPLEX_STREAMED || b == extprocv3.ProcessingMode_GRPC {
			// The harness does not model these modes; an override into
			// them is ignored rather than half-implemented.
			return nil, false
		}
	}
	if len(c.allowedOverrideModes) > 0 {
		ok := false
		for _, a := range c.allowedOverrideModes {
			// Compared on every field except request_header_mode, which
			// cannot change any more when the override arrives.
			cand := proto.Clone(a).(*extprocv3.ProcessingMode)
			cand.RequestHeaderMode = res.RequestHeaderMode
			if proto.Equal(resolveMode(cand), res) {
				ok = true
				break
			}
		}
		if !ok {
			return nil, false
		}
	}
	return res, true
}
